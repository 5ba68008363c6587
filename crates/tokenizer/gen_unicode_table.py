# Generates crates/tokenizer/src/unicode_table.rs from Python's unicodedata.
import unicodedata, sys
CATS = ["Lu","Ll","Lt","Lm","Lo","Mn","Mc","Me","Nd","Nl","No","Pc","Pd","Ps","Pe","Pi","Pf","Po","Sm","Sc","Sk","So","Zs","Zl","Zp","Cc","Cf","Cs","Co","Cn"]
idx = {c:i for i,c in enumerate(CATS)}
runs = []
prev = None
for cp in range(0x110000):
    c = idx[unicodedata.category(chr(cp))]
    if c != prev:
        runs.append((cp, c)); prev = c
out = []
out.append("//! General-category table generated from the Unicode Character Database (version %s)." % unicodedata.unidata_version)
out.append("//! Regenerate with `python3.13 crates/tokenizer/gen_unicode_table.py crates/tokenizer/src/unicode_table.rs`.")
out.append("//! Each entry is `(first code point, category index)`; a run extends to the next entry's start.")
out.append("")
out.append("/// Unicode version the table was generated from.")
out.append('pub const UNICODE_VERSION: &str = "%s";' % unicodedata.unidata_version)
out.append("")
out.append("#[rustfmt::skip]")
out.append("pub(crate) static STARTS: [u32; %d] = [" % len(runs))
for i in range(0, len(runs), 12):
    out.append("    " + ", ".join("0x%X" % r[0] for r in runs[i:i+12]) + ",")
out.append("];")
out.append("")
out.append("#[rustfmt::skip]")
out.append("pub(crate) static CATS: [u8; %d] = [" % len(runs))
for i in range(0, len(runs), 30):
    out.append("    " + ", ".join(str(r[1]) for r in runs[i:i+30]) + ",")
out.append("];")
open(sys.argv[1], "w").write("\n".join(out) + "\n")
print(len(runs))

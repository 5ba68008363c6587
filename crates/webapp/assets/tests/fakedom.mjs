// A tiny fake DOM for render() tests: records tags, attributes and children.
class FakeNode {
  constructor(doc) { this.ownerDocument = doc; this.childNodes = []; this.parentNode = null; }
  appendChild(c) {
    if (c.nodeType === 11) { for (const k of [...c.childNodes]) this.appendChild(k); c.childNodes = []; return c; }
    if (c.parentNode) c.parentNode.removeChild(c);
    c.parentNode = this; this.childNodes.push(c); return c;
  }
  removeChild(c) { const i = this.childNodes.indexOf(c); if (i >= 0) this.childNodes.splice(i, 1); c.parentNode = null; return c; }
  remove() { if (this.parentNode) this.parentNode.removeChild(this); }
  get firstChild() { return this.childNodes[0] || null; }
  get lastChild() { return this.childNodes[this.childNodes.length - 1] || null; }
  get textContent() { return this.childNodes.map((c) => c.textContent).join(''); }
  set textContent(v) { this.childNodes = []; if (v !== '') this.appendChild(this.ownerDocument.createTextNode(String(v))); }
}
class FakeText extends FakeNode {
  constructor(doc, text) { super(doc); this.nodeType = 3; this.data = text; }
  get textContent() { return this.data; }
  set textContent(v) { this.data = String(v); }
}
class FakeElement extends FakeNode {
  constructor(doc, tag) { super(doc); this.nodeType = 1; this.tagName = tag.toUpperCase(); this.attributes = {}; this.listeners = {}; }
  setAttribute(k, v) { this.attributes[String(k).toLowerCase()] = String(v); }
  getAttribute(k) { return Object.prototype.hasOwnProperty.call(this.attributes, k) ? this.attributes[k] : null; }
  get className() { return this.attributes.class || ''; }
  set className(v) { this.attributes.class = String(v); }
  addEventListener(type, fn) { (this.listeners[type] ||= []).push(fn); }
  set innerHTML(_v) { throw new Error('innerHTML must not be used'); }
  set outerHTML(_v) { throw new Error('outerHTML must not be used'); }
  insertAdjacentHTML() { throw new Error('insertAdjacentHTML must not be used'); }
}
class FakeFragment extends FakeNode { constructor(doc) { super(doc); this.nodeType = 11; } }

export function makeDocument() {
  const doc = {
    createElement: (tag) => new FakeElement(doc, tag),
    createTextNode: (t) => new FakeText(doc, t),
    createDocumentFragment: () => new FakeFragment(doc),
    write() { throw new Error('document.write must not be used'); },
  };
  return doc;
}

/** Every element under node, depth first. */
export function* elements(node) {
  for (const c of node.childNodes) {
    if (c.nodeType === 1) { yield c; }
    yield* elements(c);
  }
}

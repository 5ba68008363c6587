//! Token sampling: penalties, top-k, top-p, min-p, temperature and a seeded draw, applied in
//! llama.cpp's order (truncation at temperature 1, temperature last).

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{HashMap, VecDeque};

/// Sampling parameters. The defaults are llama.cpp's.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplerConfig {
    /// 0 or below: always pick the most likely token.
    pub temperature: f32,
    /// 0: off.
    pub top_k: usize,
    /// 1.0: off.
    pub top_p: f32,
    /// 0.0: off.
    pub min_p: f32,
    /// 1.0: off.
    pub repeat_penalty: f32,
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
    /// How many recent tokens the penalties look at.
    pub penalty_last_n: usize,
    pub seed: u64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            penalty_last_n: 64,
            seed: 0,
        }
    }
}

/// Picks the next token from a row of logits. The same config (seed included) and the same
/// logits give the same tokens.
pub struct Sampler {
    cfg: SamplerConfig,
    rng: ChaCha8Rng,
    recent: VecDeque<u32>,
}

impl Sampler {
    pub fn new(cfg: SamplerConfig) -> Sampler {
        Sampler {
            rng: ChaCha8Rng::seed_from_u64(cfg.seed),
            recent: VecDeque::new(),
            cfg,
        }
    }

    pub fn config(&self) -> &SamplerConfig {
        &self.cfg
    }

    /// Record a token as part of the text (prompt or generated), for the penalties.
    pub fn accept(&mut self, token: u32) {
        if self.cfg.penalty_last_n == 0 {
            return;
        }
        if self.recent.len() == self.cfg.penalty_last_n {
            self.recent.pop_front();
        }
        self.recent.push_back(token);
    }

    /// Choose a token. `logits` is modified (penalties applied).
    pub fn sample(&mut self, logits: &mut [f32]) -> u32 {
        self.apply_penalties(logits);
        self.choose(logits)
    }

    /// Choose a token that `allowed` accepts, as llama.cpp samples under a grammar: penalties
    /// applied once, a token chosen from the whole distribution and taken if `allowed` says
    /// so (the fast path: checking one token is cheap); otherwise `mask` sets every disallowed
    /// logit to -inf (returning whether any token is left) and the choice is made again from
    /// what remains. Taking an allowed first draw, else redrawing from the allowed tokens, gives
    /// each allowed token its probability renormalised over the allowed ones. `None` when the
    /// mask leaves nothing. Greedy sampling stays greedy: the most likely allowed token.
    pub fn sample_constrained(
        &mut self,
        logits: &mut [f32],
        allowed: impl FnOnce(u32) -> bool,
        mask: impl FnOnce(&mut [f32]) -> bool,
    ) -> Option<u32> {
        self.apply_penalties(logits);
        let first = self.choose(logits);
        if allowed(first) {
            return Some(first);
        }
        if !mask(logits) {
            return None;
        }
        Some(self.choose(logits))
    }

    /// Top-k, top-p, min-p, temperature and the draw, on penalised logits.
    fn choose(&mut self, logits: &[f32]) -> u32 {
        if self.cfg.temperature <= 0.0 {
            return argmax(logits);
        }
        let mut cand: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .map(|(i, &l)| (i as u32, l))
            .collect();
        let by_logit_desc = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1);
        if self.cfg.top_k > 0 && self.cfg.top_k < cand.len() {
            cand.select_nth_unstable_by(self.cfg.top_k - 1, by_logit_desc);
            cand.truncate(self.cfg.top_k);
        }
        cand.sort_unstable_by(by_logit_desc);
        if self.cfg.top_p < 1.0 {
            let probs = softmax(cand.iter().map(|c| c.1));
            let mut cum = 0.0;
            let mut keep = cand.len();
            for (i, p) in probs.iter().enumerate() {
                cum += p;
                if cum >= self.cfg.top_p {
                    keep = i + 1;
                    break;
                }
            }
            cand.truncate(keep.max(1));
        }
        if self.cfg.min_p > 0.0 {
            let threshold = cand[0].1 + self.cfg.min_p.ln();
            let keep = cand.iter().take_while(|c| c.1 >= threshold).count();
            cand.truncate(keep.max(1));
        }
        let probs = softmax(cand.iter().map(|c| c.1 / self.cfg.temperature));
        let r = (self.rng.next_u32() >> 8) as f32 / (1u32 << 24) as f32;
        let mut cum = 0.0;
        for (c, p) in cand.iter().zip(&probs) {
            cum += p;
            if r < cum {
                return c.0;
            }
        }
        cand.last().map(|c| c.0).unwrap_or(0)
    }

    fn apply_penalties(&self, logits: &mut [f32]) {
        let c = &self.cfg;
        if self.recent.is_empty()
            || (c.repeat_penalty == 1.0 && c.presence_penalty == 0.0 && c.frequency_penalty == 0.0)
        {
            return;
        }
        let mut counts: HashMap<u32, usize> = HashMap::new();
        for &t in &self.recent {
            *counts.entry(t).or_default() += 1;
        }
        for (&t, &n) in &counts {
            let Some(l) = logits.get_mut(t as usize) else {
                continue;
            };
            if *l <= 0.0 {
                *l *= c.repeat_penalty;
            } else {
                *l /= c.repeat_penalty;
            }
            *l -= n as f32 * c.frequency_penalty + c.presence_penalty;
        }
    }
}

/// Index of the largest logit (the first one on ties).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

fn softmax(logits: impl Iterator<Item = f32> + Clone) -> Vec<f32> {
    let max = logits.clone().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = logits.map(|l| (l - max).exp()).collect();
    let sum: f32 = e.iter().sum();
    e.into_iter().map(|x| x / sum).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(temperature: f32) -> SamplerConfig {
        SamplerConfig {
            temperature,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            ..SamplerConfig::default()
        }
    }

    #[test]
    fn zero_temperature_is_greedy() {
        let mut s = Sampler::new(cfg(0.0));
        assert_eq!(s.sample(&mut [0.1, 3.0, 2.9, -1.0]), 1);
    }

    #[test]
    fn same_seed_same_tokens_different_seed_differs() {
        let logits: Vec<f32> = (0..50).map(|i| (i % 7) as f32 * 0.3).collect();
        let draw = |seed| {
            let mut s = Sampler::new(SamplerConfig { seed, ..cfg(1.0) });
            (0..40)
                .map(|_| s.sample(&mut logits.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }

    #[test]
    fn top_k_one_is_greedy_at_any_temperature() {
        let mut s = Sampler::new(SamplerConfig {
            top_k: 1,
            ..cfg(5.0)
        });
        for _ in 0..20 {
            assert_eq!(s.sample(&mut [1.0, 2.0, 1.9]), 1);
        }
    }

    #[test]
    fn top_p_drops_the_tail() {
        // probabilities ~ 0.665, 0.245, 0.090: top_p 0.5 keeps only the first.
        let mut s = Sampler::new(SamplerConfig {
            top_p: 0.5,
            ..cfg(1.0)
        });
        for _ in 0..50 {
            assert_eq!(s.sample(&mut [2.0, 1.0, 0.0]), 0);
        }
    }

    #[test]
    fn min_p_drops_unlikely_tokens() {
        let mut s = Sampler::new(SamplerConfig {
            min_p: 0.5,
            ..cfg(1.0)
        });
        for _ in 0..50 {
            // token 1 has probability e^-2 of token 0's: below 0.5, dropped.
            assert_eq!(s.sample(&mut [2.0, 0.0]), 0);
        }
    }

    #[test]
    fn constrained_sampling_takes_allowed_draws_and_redraws_from_the_rest() {
        // Greedy: the best token if allowed, else the best allowed one; penalties applied once.
        let mut s = Sampler::new(SamplerConfig {
            repeat_penalty: 2.0,
            ..cfg(0.0)
        });
        s.accept(1);
        let mut l = [1.0, 4.0, 3.0, 0.5];
        // 4.0 / 2 = 2.0 < 3.0: token 2 is the best, and allowed.
        let t = s.sample_constrained(&mut l, |t| t == 2, |_| unreachable!());
        assert_eq!(t, Some(2));
        let mut l = [1.0, 4.0, 3.0, 0.5];
        let t = s.sample_constrained(
            &mut l,
            |t| t == 3,
            |l| {
                l[..3].fill(f32::NEG_INFINITY);
                true
            },
        );
        assert_eq!(t, Some(3));
        assert_eq!(l[3], 0.5);
        // Nothing left: no token.
        let mut l = [1.0, 2.0];
        assert_eq!(s.sample_constrained(&mut l, |_| false, |_| false), None);
        // At temperature 1 every draw is an allowed token, from the allowed ones' distribution.
        let mut s = Sampler::new(SamplerConfig {
            seed: 3,
            ..cfg(1.0)
        });
        let mut counts = [0usize; 4];
        for _ in 0..4000 {
            let mut l = [0.0, 0.0, 1.0, 0.0];
            let t = s
                .sample_constrained(
                    &mut l,
                    |t| t >= 2,
                    |l| {
                        l[..2].fill(f32::NEG_INFINITY);
                        true
                    },
                )
                .unwrap();
            counts[t as usize] += 1;
        }
        assert_eq!(counts[0] + counts[1], 0);
        // e / (e + 1) = 0.73 of the draws are token 2.
        let share = counts[2] as f64 / 4000.0;
        assert!((share - 0.731).abs() < 0.03, "{counts:?}");
    }

    #[test]
    fn repeat_penalty_divides_positive_and_multiplies_negative() {
        let mut s = Sampler::new(SamplerConfig {
            repeat_penalty: 2.0,
            presence_penalty: 0.5,
            frequency_penalty: 0.25,
            ..cfg(0.0)
        });
        s.accept(0);
        s.accept(1);
        s.accept(1);
        let mut l = [4.0, -1.0, 3.0];
        s.apply_penalties(&mut l);
        assert_eq!(l, [4.0 / 2.0 - 0.25 - 0.5, -2.0 - 0.5 - 0.5, 3.0]);
    }

    #[test]
    fn penalty_window_forgets_old_tokens() {
        let mut s = Sampler::new(SamplerConfig {
            repeat_penalty: 2.0,
            penalty_last_n: 2,
            ..cfg(0.0)
        });
        s.accept(0);
        s.accept(1);
        s.accept(2);
        let mut l = [4.0, 4.0, 4.0];
        s.apply_penalties(&mut l);
        assert_eq!(l, [4.0, 2.0, 2.0]);
    }
}

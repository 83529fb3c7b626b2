//! The rise/fall state machine: pure, no clocks, no I/O, so every sequence of results
//! can be table-tested.

use crate::model::Probed;

/// A change of probed state returned by [`Hysteresis::observe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flip {
    /// State before the result ([`Probed::Unknown`] for the first result).
    pub from: Probed,
    /// State after it ([`Probed::Up`] or [`Probed::Down`]).
    pub to: Probed,
}

impl Flip {
    /// True for the first result of a new endpoint, which settles `Unknown` rather than
    /// flipping between up and down (not counted as a transition).
    pub fn is_initial(&self) -> bool {
        self.from == Probed::Unknown
    }
}

/// Hysteresis over consecutive probe results.
///
/// From `Unknown` the first result decides at once, so startup needs one probe round
/// rather than `rise` rounds. After that, `fall` consecutive failures take an up endpoint
/// down and `rise` consecutive successes bring a down endpoint back.
#[derive(Debug, Clone)]
pub struct Hysteresis {
    rise: u32,
    fall: u32,
    state: Probed,
    successes: u32,
    failures: u32,
}

impl Hysteresis {
    /// A machine in state `Unknown`; `rise` and `fall` below 1 act as 1.
    pub fn new(rise: u32, fall: u32) -> Self {
        Hysteresis {
            rise: rise.max(1),
            fall: fall.max(1),
            state: Probed::Unknown,
            successes: 0,
            failures: 0,
        }
    }

    /// Current state.
    pub fn state(&self) -> Probed {
        self.state
    }

    /// How many results in a row were the same as the last one (0 before any result).
    pub fn consecutive(&self) -> u32 {
        self.successes.max(self.failures)
    }

    /// Feeds one probe result; returns the flip it caused, if any.
    pub fn observe(&mut self, ok: bool) -> Option<Flip> {
        if ok {
            self.successes = self.successes.saturating_add(1);
            self.failures = 0;
        } else {
            self.failures = self.failures.saturating_add(1);
            self.successes = 0;
        }
        let to = match self.state {
            Probed::Unknown => {
                if ok {
                    Probed::Up
                } else {
                    Probed::Down
                }
            }
            Probed::Up if self.failures >= self.fall => Probed::Down,
            Probed::Down if self.successes >= self.rise => Probed::Up,
            _ => return None,
        };
        let from = std::mem::replace(&mut self.state, to);
        Some(Flip { from, to })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Probed::{Down, Unknown, Up};

    /// Runs a sequence of results ('+' success, '-' failure) and returns the flips with
    /// the index of the result that caused each.
    fn run(h: &mut Hysteresis, seq: &str) -> Vec<(usize, Probed, Probed)> {
        seq.chars()
            .enumerate()
            .filter_map(|(i, c)| h.observe(c == '+').map(|f| (i, f.from, f.to)))
            .collect()
    }

    #[test]
    fn first_result_decides_immediately_whatever_rise_and_fall() {
        let mut h = Hysteresis::new(5, 5);
        assert_eq!(h.state(), Unknown);
        assert_eq!(
            h.observe(true),
            Some(Flip {
                from: Unknown,
                to: Up
            })
        );
        assert!(
            Flip {
                from: Unknown,
                to: Up
            }
            .is_initial()
        );
        let mut h = Hysteresis::new(5, 5);
        assert_eq!(
            h.observe(false),
            Some(Flip {
                from: Unknown,
                to: Down
            })
        );
        assert_eq!(h.state(), Down);
    }

    #[test]
    fn up_goes_down_after_fall_consecutive_failures() {
        let mut h = Hysteresis::new(2, 3);
        assert_eq!(
            run(&mut h, "+--+---+"),
            vec![(0, Unknown, Up), (6, Up, Down)]
        );
        assert!(!Flip { from: Up, to: Down }.is_initial());
    }

    #[test]
    fn down_comes_up_after_rise_consecutive_successes() {
        let mut h = Hysteresis::new(2, 3);
        assert_eq!(
            run(&mut h, "-+-++"),
            vec![(0, Unknown, Down), (4, Down, Up)]
        );
    }

    #[test]
    fn alternating_results_never_flip_with_rise_fall_three() {
        for start in ["+", "-"] {
            let mut h = Hysteresis::new(3, 3);
            run(&mut h, start);
            let settled = h.state();
            let flips = run(&mut h, &"-+".repeat(50));
            assert!(flips.is_empty(), "{flips:?}");
            assert_eq!(h.state(), settled);
        }
    }

    #[test]
    fn rise_fall_one_follows_every_result() {
        let mut h = Hysteresis::new(1, 1);
        assert_eq!(run(&mut h, "+-+").len(), 3);
        // Zero is treated as one rather than flipping on no evidence.
        let mut h = Hysteresis::new(0, 0);
        assert_eq!(run(&mut h, "+-").len(), 2);
    }

    #[test]
    fn consecutive_counts_the_current_streak() {
        let mut h = Hysteresis::new(2, 2);
        assert_eq!(h.consecutive(), 0);
        run(&mut h, "++");
        assert_eq!(h.consecutive(), 2);
        run(&mut h, "-");
        assert_eq!(h.consecutive(), 1);
        run(&mut h, "---");
        assert_eq!((h.consecutive(), h.state()), (4, Down));
    }

    #[test]
    fn a_streak_past_the_threshold_flips_only_once() {
        let mut h = Hysteresis::new(2, 2);
        assert_eq!(
            run(&mut h, "+------"),
            vec![(0, Unknown, Up), (2, Up, Down)]
        );
        assert_eq!(run(&mut h, "+++++"), vec![(1, Down, Up)]);
    }
}

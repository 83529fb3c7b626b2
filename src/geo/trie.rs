//! A compact binary trie compiled from a GeoIP database's search tree.
//!
//! A City database maps ~3.6 M networks to ~460 k data records, but geode reads only
//! country, continent and coordinates from a record, and those repeat: GeoLite2-City
//! has ~130 k distinct ones (location classes). Compiling the tree at load, with each
//! record replaced by its class, lets sibling networks of the same class fold into one
//! leaf, and leaves the database file unmapped: resident memory is the compiled trie,
//! not whichever pages of a 60 MB file the lookups happened to touch.
//!
//! A folded leaf keeps the prefix length of the networks it replaced (`extra` counts the
//! levels folded away), so a lookup reports exactly the network the database names,
//! which is the ECS scope geode answers with (DESIGN.md, routing step 5).
//!
//! IPv4 networks (3.0 M of GeoLite2-City's 3.6 M) are not kept as trie nodes (8 bytes
//! each) but in a [`V4Table`]: per /16 block, the sorted starts (2 bytes) and values
//! (3 bytes) of runs of equal (class, prefix length), found in two short steps: a group
//! of twelve entries by its first start, then the entry inside the group.
//! In an IPv6 tree the IPv4 subtree becomes one marker leaf ([`V4_SUBTREE`]), so its
//! aliases (`::/96`, `::ffff:0:0/96`, `2002::/16`) all lead to the table.
//!
//! Pure: it knows nothing of the mmdb format beyond "a node has two records"; geo/mod.rs
//! reads the file and decodes the records.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

/// Marks a value as a leaf; otherwise it indexes `nodes`.
const LEAF: u32 = 1 << 31;
const EXTRA_SHIFT: u32 = 24;
const EXTRA_MAX: u32 = 0x7f;
const CLASS_MASK: u32 = (1 << EXTRA_SHIFT) - 1;
/// Class ids fit in 24 bits; the all-ones id is the [`V4_SUBTREE`] marker.
pub const MAX_CLASSES: u32 = CLASS_MASK;
/// The class of addresses the database has no record for.
pub const NO_DATA: u32 = 0;
/// The class a trie lookup reports when it reached the IPv4 subtree: continue in the
/// [`V4Table`] with the next 32 bits; `prefix` is the depth it was reached at.
pub const V4_SUBTREE: u32 = CLASS_MASK;
/// The build's "not compiled yet" memo entry. Entries hold value + 1, and u32::MAX is a
/// leaf value no build produces (extra 127 of the marker class), so 0 is free for this.
const MEMO_UNSET: u32 = 0;

fn leaf(class: u32, extra: u32) -> u32 {
    LEAF | (extra << EXTRA_SHIFT) | class
}

/// The compiled trie. `Box<[_]>` rather than `Vec`: no spare capacity held for life.
#[derive(Debug)]
pub struct Trie {
    nodes: Box<[[u32; 2]]>,
    root: u32,
}

/// The result of a walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    /// The location class, [`NO_DATA`] when the database has no record.
    pub class: u32,
    /// Prefix length of the database network the address is in.
    pub prefix: u8,
}

/// Why a tree could not be compiled.
#[derive(Debug, PartialEq, Eq)]
pub enum BuildError<E> {
    /// Reading a record's class failed.
    Class(E),
    /// More nodes or classes than 31-/24-bit ids hold, or a tree whose paths multiply
    /// (a damaged or hostile file: a verified real database never gets near this).
    TooLarge,
}

impl Trie {
    /// Compiles the tree of a database with `node_count` nodes and `bits`-bit addresses
    /// (32 or 128). `read(node, side)` returns a node's left (0) or right (1) record;
    /// `class_of(record, address)` returns the class of a data record, given the first
    /// address (left-aligned) of one network pointing at it.
    /// Source node `stop` (the IPv4 subtree) compiles to a [`V4_SUBTREE`] leaf; it must
    /// not be reachable deeper than `bits - 32`.
    pub fn build<E>(
        node_count: u32,
        bits: u32,
        stop: Option<u32>,
        read: impl Fn(u32, usize) -> u32,
        class_of: impl FnMut(u32, u128) -> Result<u32, E>,
    ) -> Result<Trie, BuildError<E>> {
        let mut b = Build {
            node_count,
            bits,
            stop,
            read,
            class_of,
            // Zeroed memory (calloc): pages of nodes never visited (the IPv4 subtree,
            // compiled into the V4Table) are never resident.
            memo: vec![0; node_count as usize],
            nodes: Vec::new(),
            // Each node is compiled once unless it sits within `bits` of the bottom on
            // its first visit; a budget stops a crafted tree from multiplying paths.
            budget: u64::from(node_count) * 4 + 1024,
        };
        let root = if node_count == 0 {
            leaf(NO_DATA, 0)
        } else if stop == Some(0) {
            leaf(V4_SUBTREE, 0)
        } else {
            b.node(0, 0, 0)?.0
        };
        Ok(Trie {
            nodes: b.nodes.into_boxed_slice(),
            root,
        })
    }

    /// Looks up `addr` (most significant bit first, left-aligned in a u128), reading at
    /// most `bits` bits. Running out of bits on an inner node means no record, as in the
    /// mmdb readers.
    #[inline]
    pub fn find(&self, addr: u128, bits: u32) -> Found {
        let mut v = self.root;
        let mut depth = 0u32;
        // The bits still to read, the next one on top: shifted by one each step, where
        // `addr >> (127 - depth)` was a variable 128-bit shift (shrd, shr, test, cmove)
        // in every step of a walk some 50 steps long for an IPv6 /56 (bench/README.md).
        let mut rest = addr;
        while v & LEAF == 0 {
            if depth == bits {
                return Found {
                    class: NO_DATA,
                    prefix: depth as u8,
                };
            }
            let bit = (rest >> 127) as usize;
            rest <<= 1;
            v = self.nodes[v as usize][bit];
            depth += 1;
        }
        let extra = (v >> EXTRA_SHIFT) & EXTRA_MAX;
        Found {
            class: v & CLASS_MASK,
            prefix: (depth + extra) as u8,
        }
    }

    /// A trie with no networks (an IPv4 database keeps everything in its [`V4Table`]).
    pub fn empty() -> Trie {
        Trie {
            nodes: Box::new([]),
            root: leaf(NO_DATA, 0),
        }
    }

    /// Inner nodes held.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Bytes of heap the trie holds.
    pub fn heap_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.nodes)
    }
}

struct Build<R, C> {
    node_count: u32,
    bits: u32,
    stop: Option<u32>,
    read: R,
    class_of: C,
    /// Compiled value per source node, so shared subtrees (an IPv6 tree reaches its
    /// IPv4 subtree from ::/96, ::ffff:0:0/96 and 2002::/16) compile once. Holds value + 1;
    /// [`MEMO_UNSET`] (0) is "not compiled yet".
    memo: Vec<u32>,
    nodes: Vec<[u32; 2]>,
    budget: u64,
}

impl<E, R: Fn(u32, usize) -> u32, C: FnMut(u32, u128) -> Result<u32, E>> Build<R, C> {
    /// Compiles source node `n` reached by `path` at `depth`. The flag says the result
    /// depends on the depth (the walk ran out of bits inside it), so it is not memoised.
    fn node(&mut self, n: u32, path: u128, depth: u32) -> Result<(u32, bool), BuildError<E>> {
        if depth == self.bits {
            // Bits run out on an inner node: no record, prefix = all bits. A leaf
            // with no folded levels at this depth says exactly that.
            return Ok((leaf(NO_DATA, 0), true));
        }
        let memo = self.memo[n as usize];
        if memo != MEMO_UNSET {
            return Ok((memo.wrapping_sub(1), false));
        }
        if self.budget == 0 {
            return Err(BuildError::TooLarge);
        }
        self.budget -= 1;
        let mut kids = [0u32; 2];
        let mut depends = false;
        for (side, kid) in kids.iter_mut().enumerate() {
            let raw = (self.read)(n, side);
            let p = path | ((side as u128) << (127 - depth));
            *kid = if Some(raw) == self.stop {
                if depth + 1 + 32 > self.bits {
                    return Err(BuildError::TooLarge);
                }
                leaf(V4_SUBTREE, 0)
            } else if raw < self.node_count {
                let (v, d) = self.node(raw, p, depth + 1)?;
                depends |= d;
                v
            } else if raw == self.node_count {
                leaf(NO_DATA, 0)
            } else {
                let class = (self.class_of)(raw, p).map_err(BuildError::Class)?;
                if class >= MAX_CLASSES {
                    return Err(BuildError::TooLarge);
                }
                leaf(class, 0)
            };
        }
        let [l, r] = kids;
        let foldable = l & LEAF != 0
            && l & CLASS_MASK != V4_SUBTREE
            && (l >> EXTRA_SHIFT) & EXTRA_MAX < EXTRA_MAX;
        let v = if l == r && foldable {
            // Both halves are the same class at the same prefix length: one leaf that
            // remembers the level it folded.
            l + (1 << EXTRA_SHIFT)
        } else {
            let idx = u32::try_from(self.nodes.len())
                .ok()
                .filter(|&i| i < LEAF)
                .ok_or(BuildError::TooLarge)?;
            self.nodes.push(kids);
            idx
        };
        if !depends {
            self.memo[n as usize] = v.wrapping_add(1);
        }
        Ok((v, depends))
    }
}

/// IPv4 networks as runs of equal (class, prefix length), split into /16 blocks.
///
/// A lookup touches the block's index word, one or two cache lines of `keys` and one
/// group of `entries` (at most [`GROUP`] entries, 60 bytes), and nothing else: a dense
/// /16 holds up to a few thousand runs, and a plain binary search over them cost one
/// cache miss per probe under load, the largest item of the query path's profile.
#[derive(Debug)]
pub struct V4Table {
    /// Block `b`'s entries are `index[b]..index[b + 1]`; the first starts at offset 0.
    index: Box<[u32]>,
    /// Entries: start (low 16 bits of the address, little-endian) then a 24-bit value,
    /// 5 bytes rather than 8 (3 M entries). Side by side, so the search's last probe
    /// has already fetched the value.
    entries: Box<[[u8; 5]]>,
    /// `keys[k]` is the start of `entries[k * GROUP]`: the search picks a group here
    /// first, then searches only inside it.
    keys: Box<[u16]>,
    /// How a 24-bit value reads (see [`Values`]).
    values: Values,
}

/// Entries per group of the two-step search: 60 bytes, one or two cache lines.
const GROUP: usize = 12;

/// The meaning of an entry's 24-bit value.
#[derive(Debug)]
enum Values {
    /// The value is the class (low 19 bits) and the prefix length minus one (high 5):
    /// no further memory read. Holds when every class is below 2^19 and no network is
    /// the whole address space (GeoLite2-City: 133 k classes; DB-IP City Lite: 488 k).
    Direct,
    /// The value indexes a table of class | prefix length << 24.
    Table(Box<[u32]>),
}

const DIRECT_CLASS_BITS: u32 = 19;

impl V4Table {
    /// Compiles the IPv4 tree whose top record is `top` (a node, or a leaf when the
    /// whole space is one network). `shift` places a 32-bit address in the left-aligned
    /// u128 that `class_of` receives: 96 for an IPv4 tree, 0 for the subtree at `::/96`
    /// of an IPv6 tree.
    pub fn build<E>(
        top: u32,
        node_count: u32,
        shift: u32,
        read: impl Fn(u32, usize) -> u32,
        mut class_of: impl FnMut(u32, u128) -> Result<u32, E>,
    ) -> Result<V4Table, BuildError<E>> {
        // Runs of equal (class, prefix length) come out of the walk in address order and
        // go straight into their /16 blocks: no list of the 3 M runs is held on the side
        // (24 MB more at the start-up peak, with the 56 MB database in memory).
        // Room for the most entries the tree can give (a leaf per node, plus a first
        // entry per block): pages never written are never resident, and the slice is
        // shrunk to size at the end.
        let mut out = Entries {
            index: Vec::with_capacity(BLOCKS + 1),
            entries: Vec::with_capacity(node_count as usize + 1 + BLOCKS),
            direct: true,
            ids: HashMap::default(),
            values: Vec::new(),
            cur: None,
        };
        let mut budget = u64::from(node_count) * 4 + 1024;
        // Depth-first, left before right, so runs come out sorted and contiguous.
        let mut stack: Vec<(u32, u32, u32)> = vec![(top, 0, 0)];
        while let Some((raw, addr, depth)) = stack.pop() {
            let class = if raw < node_count && depth < 32 {
                if budget == 0 {
                    return Err(BuildError::TooLarge);
                }
                budget -= 1;
                stack.push((read(raw, 1), addr | 1 << (31 - depth), depth + 1));
                stack.push((read(raw, 0), addr, depth + 1));
                continue;
            } else if raw <= node_count {
                // No record, or bits run out on a node: no record at /32.
                NO_DATA
            } else {
                let c = class_of(raw, u128::from(addr) << shift).map_err(BuildError::Class)?;
                if c >= MAX_CLASSES {
                    return Err(BuildError::TooLarge);
                }
                c
            };
            out.run(addr, class | depth << 24)?;
        }
        out.finish()
    }

    /// Looks up an IPv4 address; the prefix is in IPv4 terms.
    #[inline]
    pub fn find(&self, addr: u32) -> Found {
        let b = (addr >> 16) as usize;
        let (lo, hi) = (self.index[b] as usize, self.index[b + 1] as usize);
        let low = addr as u16;
        // Step 1: the group. Keys k with k * GROUP in lo..hi are this block's; the
        // entries before the first of them form a group of their own.
        let (mut from, mut to) = (lo, hi);
        if hi - lo > GROUP {
            let first = lo.div_ceil(GROUP);
            let last = (hi - 1) / GROUP;
            let n = self.keys[first..=last].partition_point(|&k| k <= low);
            if n > 0 {
                from = (first + n - 1) * GROUP;
            }
            to = ((first + n) * GROUP).min(hi);
        }
        // Step 2: inside it. `entries[from]` starts at or below `low` (the block's first
        // entry starts at 0, a chosen key is <= low), so the point is at least 1.
        let i = from + self.entries[from..to].partition_point(|e| start_of(e) <= low) - 1;
        let [_, _, a, b, c] = self.entries[i];
        let v = u32::from(a) | u32::from(b) << 8 | u32::from(c) << 16;
        match &self.values {
            Values::Direct => Found {
                class: v & ((1 << DIRECT_CLASS_BITS) - 1),
                prefix: (v >> DIRECT_CLASS_BITS) as u8 + 1,
            },
            Values::Table(values) => {
                let v = values[v as usize];
                Found {
                    class: v & CLASS_MASK,
                    prefix: (v >> 24) as u8,
                }
            }
        }
    }

    /// Runs held, and bytes of heap.
    pub fn footprint(&self) -> (usize, usize) {
        let values = match &self.values {
            Values::Direct => 0,
            Values::Table(v) => std::mem::size_of_val(&**v),
        };
        (
            self.entries.len(),
            std::mem::size_of_val(&*self.index)
                + std::mem::size_of_val(&*self.entries)
                + std::mem::size_of_val(&*self.keys)
                + values,
        )
    }

    /// True when entries hold class and prefix themselves (no value table).
    #[cfg(test)]
    pub fn is_direct(&self) -> bool {
        matches!(self.values, Values::Direct)
    }
}

/// The entries of a [`V4Table`] while they are built, run by run.
struct Entries {
    index: Vec<u32>,
    entries: Vec<[u8; 5]>,
    /// Values are still direct (class and prefix length in the entry).
    direct: bool,
    ids: HashMap<u32, u32, BuildHasherDefault<crate::model::Fx>>,
    values: Vec<u32>,
    /// Value (class | len << 24) of the run being extended.
    cur: Option<u32>,
}

impl Entries {
    fn entry(start: u16, id: u32) -> [u8; 5] {
        let (s, id) = (start.to_le_bytes(), id.to_le_bytes());
        [s[0], s[1], id[0], id[1], id[2]]
    }

    fn fits_direct(v: u32) -> bool {
        let (class, len) = (v & CLASS_MASK, v >> 24);
        class < 1 << DIRECT_CLASS_BITS && len >= 1
    }

    /// The 24-bit entry value of `v`; the first value that does not fit the direct form
    /// turns every entry so far into an index of the value table.
    fn id<E>(&mut self, v: u32) -> Result<u32, BuildError<E>> {
        if self.direct && !Self::fits_direct(v) {
            self.direct = false;
            for i in 0..self.entries.len() {
                let [s0, s1, a, b, c] = self.entries[i];
                let x = u32::from_le_bytes([a, b, c, 0]);
                let old =
                    (x & ((1 << DIRECT_CLASS_BITS) - 1)) | ((x >> DIRECT_CLASS_BITS) + 1) << 24;
                let id = self.table_id(old)?;
                self.entries[i] = Self::entry(u16::from_le_bytes([s0, s1]), id);
            }
        }
        if self.direct {
            let (class, len) = (v & CLASS_MASK, v >> 24);
            Ok(class | (len - 1) << DIRECT_CLASS_BITS)
        } else {
            self.table_id(v)
        }
    }

    fn table_id<E>(&mut self, v: u32) -> Result<u32, BuildError<E>> {
        let next = self.values.len() as u32;
        let id = *self.ids.entry(v).or_insert(next);
        if id == next {
            if next > 0xff_ffff {
                return Err(BuildError::TooLarge);
            }
            self.values.push(v);
        }
        Ok(id)
    }

    /// Opens the next block; its first entry is the run covering its first address.
    fn open_block<E>(&mut self, first: u32) -> Result<(), BuildError<E>> {
        let at = u32::try_from(self.entries.len()).map_err(|_| BuildError::TooLarge)?;
        self.index.push(at);
        let id = self.id(first)?;
        self.entries.push(Self::entry(0, id));
        Ok(())
    }

    /// A leaf of value `v` at `addr`, in address order after the previous one.
    fn run<E>(&mut self, addr: u32, v: u32) -> Result<(), BuildError<E>> {
        if self.cur == Some(v) {
            return Ok(());
        }
        let block = (addr >> 16) as usize;
        // Blocks before this one that have not started yet start inside the current run.
        while self.index.len() < block {
            let cur = self.cur.ok_or(BuildError::TooLarge)?;
            self.open_block(cur)?;
        }
        if self.index.len() == block {
            if addr & 0xffff == 0 {
                self.open_block(v)?;
            } else {
                let cur = self.cur.ok_or(BuildError::TooLarge)?;
                self.open_block(cur)?;
                let id = self.id(v)?;
                self.entries.push(Self::entry(addr as u16, id));
            }
        } else {
            let id = self.id(v)?;
            self.entries.push(Self::entry(addr as u16, id));
        }
        self.cur = Some(v);
        Ok(())
    }

    fn finish<E>(mut self) -> Result<V4Table, BuildError<E>> {
        let cur = self.cur.ok_or(BuildError::TooLarge)?;
        while self.index.len() < BLOCKS {
            self.open_block(cur)?;
        }
        let end = u32::try_from(self.entries.len()).map_err(|_| BuildError::TooLarge)?;
        self.index.push(end);
        let keys = self.entries.iter().step_by(GROUP).map(start_of).collect();
        Ok(V4Table {
            index: self.index.into_boxed_slice(),
            entries: self.entries.into_boxed_slice(),
            keys,
            values: if self.direct {
                Values::Direct
            } else {
                Values::Table(self.values.into_boxed_slice())
            },
        })
    }
}

fn start_of(e: &[u8; 5]) -> u16 {
    u16::from_le_bytes([e[0], e[1]])
}

const BLOCKS: usize = 1 << 16;

#[cfg(test)]
mod tests {
    use super::*;

    /// A source tree: node -> [left, right] raw records; `nc` = node count; records
    /// above `nc` are "data pointers" whose class is `raw - nc`.
    fn build(tree: &[[u32; 2]], bits: u32) -> Trie {
        let nc = tree.len() as u32;
        Trie::build::<()>(
            nc,
            bits,
            None,
            |n, s| tree[n as usize][s],
            |raw, _| Ok(raw - nc),
        )
        .unwrap()
    }

    fn top(bits: &[u8]) -> u128 {
        bits.iter()
            .enumerate()
            .fold(0u128, |a, (i, &b)| a | (u128::from(b) << (127 - i)))
    }

    #[test]
    fn unfolded_lookup_reports_depth_and_class() {
        // nc = 3. Root: left = node 1, right = class 1 (raw 4). Node 1: left = node 2,
        // right = empty (raw 3). Node 2: class 2, class 3.
        let t = build(&[[1, 4], [2, 3], [5, 6]], 32);
        assert_eq!(
            t.find(top(&[1]), 32),
            Found {
                class: 1,
                prefix: 1
            }
        );
        assert_eq!(
            t.find(top(&[0, 1]), 32),
            Found {
                class: 0,
                prefix: 2
            }
        );
        assert_eq!(
            t.find(top(&[0, 0, 0]), 32),
            Found {
                class: 2,
                prefix: 3
            }
        );
        assert_eq!(
            t.find(top(&[0, 0, 1]), 32),
            Found {
                class: 3,
                prefix: 3
            }
        );
        assert_eq!(t.node_count(), 3);
    }

    #[test]
    fn same_class_siblings_fold_but_keep_their_prefix() {
        // Node 2's halves are both class 2: folded into one leaf that still says /3.
        let t = build(&[[1, 4], [2, 3], [5, 5]], 32);
        assert_eq!(t.node_count(), 2);
        assert_eq!(
            t.find(top(&[0, 0, 1]), 32),
            Found {
                class: 2,
                prefix: 3
            }
        );
        assert_eq!(
            t.find(top(&[0, 0, 0]), 32),
            Found {
                class: 2,
                prefix: 3
            }
        );
        // Folding cascades: a whole tree of one class at /2 is one leaf.
        let t = build(&[[1, 2], [4, 4], [4, 4]], 32);
        assert_eq!(t.node_count(), 0);
        assert_eq!(
            t.find(top(&[1, 0]), 32),
            Found {
                class: 1,
                prefix: 2
            }
        );
    }

    #[test]
    fn shared_subtrees_compile_once_and_report_their_own_depth() {
        // Node 1 is reachable at depth 1 (via the root's left) and depth 2 (via node 2).
        let t = build(&[[1, 2], [5, 6], [1, 7]], 32);
        assert_eq!(t.node_count(), 3);
        assert_eq!(
            t.find(top(&[0, 1]), 32),
            Found {
                class: 3,
                prefix: 2
            }
        );
        assert_eq!(
            t.find(top(&[1, 0, 1]), 32),
            Found {
                class: 3,
                prefix: 3
            }
        );
        assert_eq!(
            t.find(top(&[1, 1]), 32),
            Found {
                class: 4,
                prefix: 2
            }
        );
    }

    #[test]
    fn bits_running_out_on_a_node_is_no_data_at_full_length() {
        // A chain deeper than 2 bits: a 2-bit lookup ends on a node.
        let t = build(&[[1, 1], [2, 2], [4, 5]], 2);
        assert_eq!(
            t.find(top(&[0, 1]), 2),
            Found {
                class: 0,
                prefix: 2
            }
        );
    }

    #[test]
    fn the_ipv4_subtree_is_one_marker_however_it_is_reached() {
        // Node 2 is the "IPv4 subtree", reached at depth 1 (right of root) and depth 2.
        let tree = [[1u32, 2], [2, 4], [5, 6]];
        let t = Trie::build::<()>(
            3,
            128,
            Some(2),
            |n, s| tree[n as usize][s],
            |r, _| Ok(r - 3),
        )
        .unwrap();
        assert_eq!(
            t.find(top(&[1]), 128),
            Found {
                class: V4_SUBTREE,
                prefix: 1
            }
        );
        assert_eq!(
            t.find(top(&[0, 0]), 128),
            Found {
                class: V4_SUBTREE,
                prefix: 2
            }
        );
        assert_eq!(
            t.find(top(&[0, 1]), 128),
            Found {
                class: 1,
                prefix: 2
            }
        );
        assert_eq!(t.node_count(), 2, "node 2 is not compiled into the trie");
        // Too deep to hold 32 more bits: refused.
        let r = Trie::build::<()>(3, 33, Some(2), |n, s| tree[n as usize][s], |r, _| Ok(r - 3));
        assert!(matches!(r, Err(BuildError::TooLarge)));
    }

    fn table(tree: &[[u32; 2]]) -> V4Table {
        let nc = tree.len() as u32;
        V4Table::build::<()>(0, nc, 96, |n, s| tree[n as usize][s], |raw, _| Ok(raw - nc)).unwrap()
    }

    #[test]
    fn v4_table_reports_class_and_prefix_of_every_network() {
        // nc = 3. 0.0.0.0/1 -> node 1; 128.0.0.0/1 -> class 1. Node 1: 0/2 -> node 2,
        // 64/2 -> empty. Node 2: 0/3 class 2, 32/3 class 3.
        let t = table(&[[1, 4], [2, 3], [5, 6]]);
        let f = |a: &str| t.find(u32::from(a.parse::<std::net::Ipv4Addr>().unwrap()));
        assert_eq!(
            f("200.1.2.3"),
            Found {
                class: 1,
                prefix: 1
            }
        );
        assert_eq!(
            f("128.0.0.0"),
            Found {
                class: 1,
                prefix: 1
            }
        );
        assert_eq!(
            f("100.0.0.1"),
            Found {
                class: NO_DATA,
                prefix: 2
            }
        );
        assert_eq!(
            f("31.255.255.255"),
            Found {
                class: 2,
                prefix: 3
            }
        );
        assert_eq!(
            f("32.0.0.0"),
            Found {
                class: 3,
                prefix: 3
            }
        );
        // Runs spanning /16 blocks are repeated at each block start.
        assert_eq!(
            f("33.77.0.5"),
            Found {
                class: 3,
                prefix: 3
            }
        );
    }

    #[test]
    fn v4_table_merges_adjacent_runs_only_when_class_and_prefix_agree() {
        // 0/2 class 2, 64/2 class 2 (siblings: same class and length, one run);
        // 128/1 class 2 but /1: a separate run, its prefix must stay 1.
        let t = table(&[[1, 4], [4, 4]]);
        let (runs, _) = t.footprint();
        assert_eq!(runs, 1 << 16, "one entry per block, nothing more");
        assert_eq!(
            t.find(0x4000_0000),
            Found {
                class: 2,
                prefix: 2
            }
        );
        assert_eq!(
            t.find(0x8000_0000),
            Found {
                class: 2,
                prefix: 1
            }
        );
    }

    #[test]
    fn v4_table_of_a_deep_chain_ends_at_32_bits() {
        // A node chain longer than 32 levels: lookups run out of bits on a node.
        let tree: Vec<[u32; 2]> = (0..40).map(|i| [i + 1, 41]).collect();
        let nc = tree.len() as u32;
        let t = V4Table::build::<()>(0, nc, 96, |n, s| tree[n as usize][s], |raw, _| Ok(raw - nc))
            .unwrap();
        assert_eq!(
            t.find(0),
            Found {
                class: NO_DATA,
                prefix: 32
            }
        );
        assert_eq!(
            t.find(1),
            Found {
                class: 1,
                prefix: 32
            }
        );
        assert_eq!(
            t.find(0x8000_0000),
            Found {
                class: 1,
                prefix: 1
            }
        );
    }

    /// A random IPv4 tree (xorshift-seeded): a spine down to 8.0.0.0/8, then nodes that
    /// are leaves more often the deeper they are, so some /16 blocks hold hundreds of
    /// runs. Leaves are classes `1..=classes` or "no record"; `big` adds `1 << 20` to
    /// class 1 (too large for direct values).
    fn random_tree(seed: u64, classes: u32, big: bool) -> Vec<[u32; 2]> {
        #[derive(Clone, Copy)]
        enum R {
            Node(u32),
            Class(u32),
            Empty,
        }
        let mut x = seed;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut nodes: Vec<[R; 2]> = Vec::new();
        // (node, depth) still to fill in.
        let mut todo = vec![(0u32, 0u32)];
        nodes.push([R::Empty; 2]);
        while let Some((n, depth)) = todo.pop() {
            for side in 0..2 {
                let r = rnd();
                let child = if depth < 4 {
                    // The spine: left down to 0/5, right a /depth+1 leaf.
                    if side == 0 {
                        None
                    } else {
                        Some(R::Class(1 + (r % 3) as u32))
                    }
                } else if depth + 1 == 32 || r % 100 < (depth * 3).saturating_sub(30) as u64 {
                    Some(match (r >> 8) % 10 {
                        0 => R::Empty,
                        k => R::Class(1 + ((r >> 16) % u64::from(classes)) as u32 * (k as u32 % 2)),
                    })
                } else {
                    None
                };
                nodes[n as usize][side] = match child {
                    Some(c) => c,
                    None => {
                        let id = nodes.len() as u32;
                        nodes.push([R::Empty; 2]);
                        todo.push((id, depth + 1));
                        R::Node(id)
                    }
                };
                if nodes.len() > 200_000 {
                    todo.clear();
                }
            }
        }
        let nc = nodes.len() as u32;
        nodes
            .iter()
            .map(|kids| {
                kids.map(|k| match k {
                    R::Node(i) => i,
                    R::Empty => nc,
                    R::Class(1) if big => nc + 1 + (1 << 20),
                    R::Class(c) => nc + c,
                })
            })
            .collect()
    }

    /// What an mmdb reader does: walk bit by bit.
    fn walk(tree: &[[u32; 2]], addr: u32) -> Found {
        let nc = tree.len() as u32;
        let mut raw = 0u32;
        let mut depth = 0u32;
        while raw < nc && depth < 32 {
            raw = tree[raw as usize][((addr >> (31 - depth)) & 1) as usize];
            depth += 1;
        }
        Found {
            class: if raw <= nc { NO_DATA } else { raw - nc },
            prefix: depth as u8,
        }
    }

    #[test]
    fn v4_table_agrees_with_a_bitwise_walk_in_dense_blocks_both_encodings() {
        for (seed, big) in [
            (0x9e37_79b9_7f4a_7c15, false),
            (0x2545_f491_4f6c_dd1d, true),
        ] {
            let tree = random_tree(seed, 40, big);
            let t = table(&tree);
            assert_eq!(t.is_direct(), !big, "class 2^20 needs the value table");
            // Every run edge (and the address before it), plus a stride through the
            // densest region.
            let mut addrs: Vec<u32> = t
                .index
                .windows(2)
                .enumerate()
                .flat_map(|(b, w)| {
                    t.entries[w[0] as usize..w[1] as usize]
                        .iter()
                        .flat_map(move |e| {
                            let a = (b as u32) << 16 | u32::from(start_of(e));
                            [a, a.wrapping_sub(1), a | 1]
                        })
                })
                .collect();
            addrs.extend((0..1_000_000u32).map(|i| 0x0800_0000 + i.wrapping_mul(0x1f3)));
            let dense = t
                .index
                .windows(2)
                .filter(|w| w[1] - w[0] > GROUP as u32 * 4)
                .count();
            assert!(dense > 10, "the tree has dense blocks: {dense}");
            for a in addrs {
                assert_eq!(t.find(a), walk(&tree, a), "{}", std::net::Ipv4Addr::from(a));
            }
        }
    }

    #[test]
    fn v4_table_of_one_network_for_everything_keeps_prefix_zero() {
        // The top record is a leaf: 0.0.0.0/0, which direct values cannot hold.
        let t =
            V4Table::build::<()>(5, 3, 96, |_, _| unreachable!(), |raw, _| Ok(raw - 3)).unwrap();
        assert!(!t.is_direct());
        for a in [0, 0x0102_0304, u32::MAX] {
            assert_eq!(
                t.find(a),
                Found {
                    class: 2,
                    prefix: 0
                }
            );
        }
    }

    #[test]
    fn a_cycle_is_refused_not_followed_forever() {
        let tree = [[0u32, 0u32]];
        let r = Trie::build::<()>(1, 128, None, |n, s| tree[n as usize][s], |_, _| Ok(1));
        // Depth-bounded, and the budget catches the 2^128 paths.
        assert!(matches!(r, Err(BuildError::TooLarge)), "{r:?}");
    }
}

//! Queues of things held in memory for an org's audit log until a write takes them (rows of
//! KMS calls cut off mid-way, credential exchanges), bounded in all and per org: one org that
//! makes them by the thousand drops its own oldest, never another org's.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

/// Appends `item` (of org `org_of(&item)`) to `held`, first dropping one item if the org
/// holds `per_org` already (its own oldest) or `held` holds `max` (the oldest of the org that
/// holds the most). Returns the org of the item dropped, if one was.
pub fn push<T, K: Eq + Hash + Clone>(
    held: &mut VecDeque<T>,
    item: T,
    org_of: impl Fn(&T) -> K,
    per_org: usize,
    max: usize,
) -> Option<K> {
    let org = org_of(&item);
    let mine = held.iter().filter(|t| org_of(t) == org).count();
    let victim = if mine >= per_org {
        Some(org)
    } else if held.len() >= max {
        busiest(held, &org_of)
    } else {
        None
    };
    if let Some(v) = &victim
        && let Some(at) = held.iter().position(|t| org_of(t) == *v)
    {
        held.remove(at);
    }
    held.push_back(item);
    victim
}

/// Brings `held` back within the bounds [`push`] keeps, after items were put back at its front
/// (taken for a write that failed): an org over `per_org` loses its oldest, then, while `held`
/// is over `max`, the org holding the most loses its oldest. Returns how many were dropped.
pub fn trim<T, K: Eq + Hash + Clone + Ord>(
    held: &mut VecDeque<T>,
    org_of: impl Fn(&T) -> K,
    per_org: usize,
    max: usize,
) -> usize {
    let mut counts: HashMap<K, usize> = HashMap::new();
    for t in held.iter() {
        *counts.entry(org_of(t)).or_default() += 1;
    }
    // How many each org drops: what it holds over `per_org`, then one at a time from the org
    // keeping the most while more than `max` are kept.
    let mut drops: HashMap<K, usize> = HashMap::new();
    let mut kept = std::collections::BinaryHeap::new();
    for (org, n) in counts {
        let over = n.saturating_sub(per_org);
        if over > 0 {
            drops.insert(org.clone(), over);
        }
        kept.push((n - over, org));
    }
    let mut total: usize = kept.iter().map(|(n, _)| n).sum();
    while total > max {
        let Some((n, org)) = kept.pop() else { break };
        *drops.entry(org.clone()).or_default() += 1;
        total -= 1;
        kept.push((n - 1, org));
    }
    let before = held.len();
    // Oldest first: the front of the queue.
    held.retain(|t| match drops.get_mut(&org_of(t)) {
        Some(d) if *d > 0 => {
            *d -= 1;
            false
        }
        _ => true,
    });
    before - held.len()
}

/// The org holding the most items.
fn busiest<T, K: Eq + Hash + Clone>(held: &VecDeque<T>, org_of: impl Fn(&T) -> K) -> Option<K> {
    let mut counts: HashMap<K, usize> = HashMap::new();
    for t in held {
        *counts.entry(org_of(t)).or_default() += 1;
    }
    counts.into_iter().max_by_key(|(_, n)| *n).map(|(k, _)| k)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One org pushing by the thousand loses its own oldest, never another's; a full queue
    /// drops from the org holding the most.
    #[test]
    fn an_org_cannot_push_another_orgs_items_out() {
        let mut q: VecDeque<(u8, u32)> = VecDeque::new();
        let push =
            |q: &mut VecDeque<(u8, u32)>, org: u8, n: u32| push(q, (org, n), |t| t.0, 10, 25);
        assert_eq!(push(&mut q, 2, 0), None);
        for n in 0..15 {
            push(&mut q, 1, n);
        }
        let of = |q: &VecDeque<(u8, u32)>, org: u8| -> Vec<u32> {
            q.iter().filter(|t| t.0 == org).map(|t| t.1).collect()
        };
        assert_eq!(of(&q, 2), [0]);
        assert_eq!(
            of(&q, 1),
            (5..15).collect::<Vec<_>>(),
            "its own oldest went"
        );
        for n in 0..9 {
            push(&mut q, 3, n);
        }
        for n in 0..5 {
            push(&mut q, 4, n);
        }
        // 25 held: 1 of org 2, 10 of org 1, 9 of org 3, 5 of org 4. Full: org 1 gives way.
        assert_eq!(q.len(), 25);
        assert_eq!(push(&mut q, 2, 1), Some(1));
        assert_eq!(of(&q, 2), [0, 1]);
        assert_eq!(of(&q, 1), (6..15).collect::<Vec<_>>());
        assert_eq!(of(&q, 3).len(), 9);
    }

    /// Items put back at the front (a failed write's) are trimmed as `push` would have: an org
    /// over its share loses its oldest, then the busiest org, never another's.
    #[test]
    fn items_put_back_are_trimmed_fairly() {
        let of = |q: &VecDeque<(u8, u32)>, org: u8| -> Vec<u32> {
            q.iter().filter(|t| t.0 == org).map(|t| t.1).collect()
        };
        // Org 1 put 8 back in front of its 5 queued since (13, over its 10); org 2 holds 3.
        let mut q: VecDeque<(u8, u32)> = (0..8).map(|n| (1, n)).collect();
        q.extend([
            (2, 0),
            (1, 8),
            (2, 1),
            (1, 9),
            (1, 10),
            (1, 11),
            (1, 12),
            (2, 2),
        ]);
        assert_eq!(trim(&mut q, |t| t.0, 10, 25), 3);
        assert_eq!(
            of(&q, 1),
            (3..13).collect::<Vec<_>>(),
            "its own oldest went"
        );
        assert_eq!(of(&q, 2), [0, 1, 2]);
        // Over the total: the busiest org gives way, down to the bound.
        let mut q: VecDeque<(u8, u32)> = (0..9).map(|n| (1, n)).collect();
        q.extend((0..6).map(|n| (2, n)));
        q.extend((0..2).map(|n| (3, n)));
        assert_eq!(trim(&mut q, |t| t.0, 10, 12), 5);
        assert_eq!(of(&q, 1), (4..9).collect::<Vec<_>>());
        assert_eq!(of(&q, 2), (0..6).collect::<Vec<_>>().split_off(1));
        assert_eq!(of(&q, 3), [0, 1]);
    }
}

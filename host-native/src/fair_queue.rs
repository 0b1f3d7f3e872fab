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
}

//! The swap's pure next step (the closed state machine, Bottlerocket's update operator's model):
//! which rename moves one database forward or back, chosen from which identifiers exist, so a
//! swap interrupted anywhere continues or is undone from what it finds. Below the resource
//! kinds (the database kinds' `swap` hook calls it) and `migrate`, which runs the swap.

use super::record::DbSwap;

/// One move of the swap, chosen from which identifiers exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwapStep {
    Rename {
        from: String,
        to: String,
    },
    Done,
    /// A combination no swap step produces: someone else renamed or deleted something.
    Inconsistent(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Forward,
    Back,
}

/// The next rename for one database. `exists` tells whether (source_id, old_id, clone_id)
/// currently name an instance.
pub fn swap_step(db: &DbSwap, exists: (bool, bool, bool), direction: Direction) -> SwapStep {
    let rename = |from: &str, to: &str| SwapStep::Rename {
        from: from.to_string(),
        to: to.to_string(),
    };
    match (direction, exists) {
        // Forward: source → old, then clone → source.
        (Direction::Forward, (true, false, true)) => rename(&db.source_id, &db.old_id),
        (Direction::Forward, (false, true, true)) => rename(&db.clone_id, &db.source_id),
        (Direction::Forward, (true, true, false)) => SwapStep::Done,
        // Back: the clone (at source_id) → clone_id, then old → source.
        (Direction::Back, (true, true, false)) => rename(&db.source_id, &db.clone_id),
        (Direction::Back, (false, true, true)) => rename(&db.old_id, &db.source_id),
        (Direction::Back, (true, false, true)) => SwapStep::Done,
        (_, (s, o, c)) => SwapStep::Inconsistent(format!(
            "{} {}, {} {}, {} {}",
            db.source_id,
            if s { "exists" } else { "missing" },
            db.old_id,
            if o { "exists" } else { "missing" },
            db.clone_id,
            if c { "exists" } else { "missing" },
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::DbKind;

    fn db() -> DbSwap {
        DbSwap {
            logical_id: "Database".into(),
            source_id: "prod-db".into(),
            old_id: "prod-db-old-1".into(),
            clone_id: "prod-m1234-db".into(),
            kind: DbKind::Instance,
        }
    }

    #[test]
    fn the_swap_goes_forward_and_back_from_any_point() {
        use Direction::*;
        let d = db();
        let r = |from: &str, to: &str| SwapStep::Rename {
            from: from.into(),
            to: to.into(),
        };
        assert_eq!(
            swap_step(&d, (true, false, true), Forward),
            r("prod-db", "prod-db-old-1")
        );
        assert_eq!(
            swap_step(&d, (false, true, true), Forward),
            r("prod-m1234-db", "prod-db")
        );
        assert_eq!(swap_step(&d, (true, true, false), Forward), SwapStep::Done);
        assert_eq!(
            swap_step(&d, (true, true, false), Back),
            r("prod-db", "prod-m1234-db")
        );
        assert_eq!(
            swap_step(&d, (false, true, true), Back),
            r("prod-db-old-1", "prod-db")
        );
        assert_eq!(swap_step(&d, (true, false, true), Back), SwapStep::Done);
        assert!(matches!(
            swap_step(&d, (false, false, true), Forward),
            SwapStep::Inconsistent(_)
        ));
        assert!(matches!(
            swap_step(&d, (true, true, true), Back),
            SwapStep::Inconsistent(_)
        ));
    }
}

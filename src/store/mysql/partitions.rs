//! Monthly partitions of the `messages` table (MySQL store).
//!
//! `messages` is partitioned by RANGE of the message id, whose top bits are
//! the month of its `created_at` (src/ids.rs): an id bound is a month
//! bound. Partition `pYYYYMM` holds the ids made before the first
//! instant of the following month (UTC), so it holds that month (the oldest
//! partition also holds everything earlier). A MAXVALUE partition (`pmax`)
//! catches anything past the last month, so an insert never fails for want
//! of a partition.
//!
//! Upkeep ([`plan`], then [`apply`]): split the catch-all into monthly
//! partitions up to DB_PARTITION_MONTHS_AHEAD months past the current one,
//! and, with MESSAGE_RETENTION_DAYS, drop every partition whose newest
//! possible message is older than the retention (a whole month goes at
//! once, so a message is kept for up to a month longer than the setting).
//! Dropping a partition is a file deletion, not a DELETE of its rows.
//!
//! DDL cannot take placeholders. The statements here are built only from
//! numbers computed below and from partition names that the server itself
//! reported and that are checked to be plain identifiers; nothing comes
//! from a client.

use mysql::Conn;
use mysql::prelude::Queryable;
use time::OffsetDateTime;

use crate::ids;

/// What upkeep keeps: how far ahead, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionPolicy {
    /// Monthly partitions kept ahead of the current month.
    pub months_ahead: u32,
    /// Partitions entirely older than this many days are dropped; 0 keeps
    /// every message forever.
    pub retention_days: u32,
}

// Here rather than in `config`, which depends on no other module.
impl crate::config::Config {
    /// What partition upkeep keeps (MySQL).
    pub fn partition_policy(&self) -> PartitionPolicy {
        PartitionPolicy {
            months_ahead: self.db_partition_months_ahead,
            retention_days: self.message_retention_days,
        }
    }
}

/// One partition of `messages`, as the server reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub name: String,
    /// Exclusive upper bound of its ids; `None` is MAXVALUE (the catch-all).
    pub bound: Option<u64>,
    /// The server's row estimate (InnoDB statistics, not a count).
    pub rows: u64,
}

/// A partition to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPartition {
    pub name: String,
    pub bound: u64,
}

/// What one upkeep pass does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Monthly partitions to split off the catch-all, oldest first.
    pub create: Vec<NewPartition>,
    /// Partitions to drop, with every message in them.
    pub drop: Vec<String>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.drop.is_empty()
    }
}

/// The first id of a calendar month (UTC): the bound below which partition
/// `p{year}{month-1}` holds its ids. Months before the id epoch (2024-01)
/// map to 0.
pub(crate) fn month_start(year: i32, month: u8) -> u64 {
    if !(1..=12).contains(&month) {
        return 0;
    }
    ids::first_id_of_month(ids::month_index(year, month))
}

/// The month after `(year, month)`.
fn next_month((year, month): (i32, u8)) -> (i32, u8) {
    if month >= 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    }
}

/// The UTC month an instant (ms since the Unix epoch) falls in.
fn month_of_unix_ms(unix_ms: u64) -> (i32, u8) {
    let t = OffsetDateTime::from_unix_timestamp((unix_ms / 1000) as i64)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    (t.year(), u8::from(t.month()))
}

/// The month an id was made in (a bound: the month it starts).
fn month_of_id(id: u64) -> (i32, u8) {
    ids::year_month(ids::month_of_id(id))
}

fn name_of((year, month): (i32, u8)) -> String {
    format!("p{year:04}{month:02}")
}

/// The date a bound stands for, for people: `2026-12-01`.
pub(crate) fn bound_date(bound: u64) -> String {
    let (year, month) = month_of_id(bound);
    format!("{year:04}-{month:02}-01")
}

/// What upkeep should do to `existing` (in partition order) at `now_unix_ms`.
pub(crate) fn plan(existing: &[Partition], now_unix_ms: u64, policy: PartitionPolicy) -> Plan {
    let mut out = Plan::default();
    let last = existing.iter().filter_map(|p| p.bound).max();
    // Partitions must cover every id up to the end of this month:
    let mut horizon = month_of_unix_ms(now_unix_ms);
    for _ in 0..policy.months_ahead {
        horizon = next_month(horizon);
    }
    let covered_until = month_start(next_month(horizon).0, next_month(horizon).1);
    // Start at the month after the last bound (a partition `pYYYYMM` ends
    // at the start of the next month), or this month on a fresh table.
    let mut month = match last {
        Some(b) => month_of_id(b),
        None => month_of_unix_ms(now_unix_ms),
    };
    if last.is_none_or(|b| b < covered_until) {
        loop {
            let next = next_month(month);
            let bound = month_start(next.0, next.1);
            if last.is_none_or(|b| bound > b) {
                out.create.push(NewPartition {
                    name: name_of(month),
                    bound,
                });
            }
            if bound >= covered_until {
                break;
            }
            month = next;
        }
    }
    if policy.retention_days > 0 {
        let keep_ms = u64::from(policy.retention_days) * 86_400_000;
        // The first id of the month the cutoff instant falls in: a
        // partition ending at or before it holds only older months.
        let cutoff = ids::first_id_of_month(ids::month_index_of_unix_ms(
            now_unix_ms.saturating_sub(keep_ms),
        ));
        let finite = existing.iter().filter(|p| p.bound.is_some()).count();
        let has_catch_all = existing.len() > finite;
        out.drop = existing
            .iter()
            .filter(|p| p.bound.is_some_and(|b| b <= cutoff))
            .map(|p| p.name.clone())
            .collect();
        // A table keeps at least one partition (MySQL refuses to drop the
        // last one); the catch-all or a new month is always left here.
        if !has_catch_all && out.create.is_empty() && out.drop.len() == finite {
            out.drop.pop();
        }
    }
    out
}

/// A name the server reported, safe to put in DDL between backquotes.
fn checked_name(name: &str) -> mysql::Result<&str> {
    if !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        Ok(name)
    } else {
        Err(mysql::Error::MySqlError(mysql::MySqlError {
            state: "HY000".into(),
            code: 0,
            message: format!("unexpected partition name {name:?}: rename it by hand"),
        }))
    }
}

/// The partitions of `messages` in the connection's database, in order.
pub(crate) fn list(conn: &mut Conn) -> mysql::Result<Vec<Partition>> {
    let rows: Vec<(Option<String>, Option<String>, Option<u64>)> = conn.exec(
        "SELECT PARTITION_NAME, PARTITION_DESCRIPTION, TABLE_ROWS
         FROM information_schema.PARTITIONS
         WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'messages'
         ORDER BY PARTITION_ORDINAL_POSITION",
        (),
    )?;
    Ok(rows
        .into_iter()
        // An unpartitioned table has one row with a NULL name.
        .filter_map(|(name, description, rows)| {
            let name = name?;
            let bound = description.and_then(|d| d.trim().parse::<u64>().ok());
            Some(Partition {
                name,
                bound,
                rows: rows.unwrap_or(0),
            })
        })
        .collect())
}

/// Carries out `plan` against `existing` (what [`list`] returned when the
/// plan was made).
pub(crate) fn apply(conn: &mut Conn, existing: &[Partition], plan: &Plan) -> mysql::Result<()> {
    if !plan.create.is_empty() {
        let mut parts = Vec::with_capacity(plan.create.len() + 1);
        for p in &plan.create {
            parts.push(format!(
                "PARTITION `{}` VALUES LESS THAN ({})",
                checked_name(&p.name)?,
                p.bound
            ));
        }
        let sql = match existing.iter().find(|p| p.bound.is_none()) {
            // Split the catch-all: only its rows move (normally none).
            Some(catch_all) => {
                let name = checked_name(&catch_all.name)?;
                parts.push(format!("PARTITION `{name}` VALUES LESS THAN MAXVALUE"));
                format!(
                    "ALTER TABLE messages REORGANIZE PARTITION `{name}` INTO ({})",
                    parts.join(", ")
                )
            }
            None => format!("ALTER TABLE messages ADD PARTITION ({})", parts.join(", ")),
        };
        conn.query_drop(sql)?;
    }
    if !plan.drop.is_empty() {
        let names = plan
            .drop
            .iter()
            .map(|n| checked_name(n).map(|n| format!("`{n}`")))
            .collect::<mysql::Result<Vec<_>>>()?;
        conn.query_drop(format!(
            "ALTER TABLE messages DROP PARTITION {}",
            names.join(", ")
        ))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-24T05:00:00Z
    const NOW: u64 = 1_795_496_400_000;

    fn policy(months_ahead: u32, retention_days: u32) -> PartitionPolicy {
        PartitionPolicy {
            months_ahead,
            retention_days,
        }
    }

    fn part(name: &str, bound: Option<u64>) -> Partition {
        Partition {
            name: name.into(),
            bound,
            rows: 0,
        }
    }

    fn names(plan: &Plan) -> Vec<&str> {
        plan.create.iter().map(|p| p.name.as_str()).collect()
    }

    #[test]
    fn month_starts_follow_the_id_layout() {
        assert_eq!(month_start(2024, 1), 0, "the id epoch");
        assert_eq!(month_start(2023, 12), 0, "before the epoch");
        assert_eq!(month_start(2024, 2), 1 << 43);
        // 2026-12 is 35 months after 2024-01.
        assert_eq!(month_start(2026, 12), 35 << 43);
        assert_eq!(month_start(2026, 13), 0, "not a month");
        // Bounds grow month by month, and every id made during a month
        // falls between its start and the next month's.
        let mut last = 0;
        for year in 2024..2030 {
            for month in 1..=12 {
                let b = month_start(year, month);
                assert!(b > last || (year, month) == (2024, 1));
                last = b;
            }
        }
        let id = ids::message_id(ids::month_index_at("2026-11-24T10:00:00.000Z"), 5, 123_456);
        let (y, m) = month_of_id(id);
        assert_eq!((y, m), (2026, 11));
        let (ny, nm) = next_month((y, m));
        assert!(month_start(y, m) <= id && id < month_start(ny, nm));
        assert_eq!(bound_date(month_start(2027, 1)), "2027-01-01");
        assert!(
            month_start(2109, 4) < 1 << 53,
            "JSON-safe to the last month"
        );
    }

    #[test]
    fn a_fresh_table_gets_this_month_and_the_months_ahead() {
        let plan = plan(&[part("pmax", None)], NOW, policy(3, 0));
        assert_eq!(names(&plan), ["p202611", "p202612", "p202701", "p202702"]);
        assert_eq!(plan.create[0].bound, month_start(2026, 12));
        assert_eq!(plan.create[3].bound, month_start(2027, 3));
        assert!(plan.drop.is_empty());
    }

    #[test]
    fn upkeep_only_adds_what_is_missing() {
        let existing = [
            part("p202611", Some(month_start(2026, 12))),
            part("p202612", Some(month_start(2027, 1))),
            part("pmax", None),
        ];
        let p = plan(&existing, NOW, policy(3, 0));
        assert_eq!(names(&p), ["p202701", "p202702"]);
        let p = plan(&existing, NOW, policy(1, 0));
        assert!(p.is_empty(), "{p:?}");
        // Months that passed without upkeep are created too (their rows
        // sit in the catch-all until then).
        let stale = [
            part("p202605", Some(month_start(2026, 6))),
            part("pmax", None),
        ];
        let p = plan(&stale, NOW, policy(0, 0));
        assert_eq!(
            names(&p),
            [
                "p202606", "p202607", "p202608", "p202609", "p202610", "p202611"
            ]
        );
    }

    #[test]
    fn retention_drops_only_partitions_entirely_older_than_it() {
        let existing = [
            part("p202608", Some(month_start(2026, 9))),
            part("p202609", Some(month_start(2026, 10))),
            part("p202610", Some(month_start(2026, 11))),
            part("p202611", Some(month_start(2026, 12))),
            part("pmax", None),
        ];
        // 60 days before 2026-11-24 is 2026-09-25: August goes, September
        // still holds messages younger than 60 days.
        let p = plan(&existing, NOW, policy(0, 60));
        assert_eq!(p.drop, ["p202608"]);
        let p = plan(&existing, NOW, policy(0, 30));
        assert_eq!(p.drop, ["p202608", "p202609"]);
        assert!(plan(&existing, NOW, policy(0, 0)).drop.is_empty());
        // Never the current month nor the catch-all, however short.
        let p = plan(&existing, NOW, policy(0, 1));
        assert_eq!(p.drop, ["p202608", "p202609", "p202610"]);
    }

    #[test]
    fn the_last_partition_is_never_dropped() {
        let existing = [part("p202601", Some(month_start(2026, 2)))];
        let p = plan(&existing, NOW, policy(0, 1));
        // A new month is created first, so the old one may go.
        assert_eq!(
            names(&p),
            [
                "p202602", "p202603", "p202604", "p202605", "p202606", "p202607", "p202608",
                "p202609", "p202610", "p202611"
            ]
        );
        assert_eq!(p.drop, ["p202601"]);
    }

    #[test]
    fn names_are_checked_before_they_reach_ddl() {
        assert!(checked_name("p202611").is_ok());
        assert!(checked_name("pmax").is_ok());
        assert!(checked_name("p`; DROP TABLE x").is_err());
        assert!(checked_name("").is_err());
    }
}

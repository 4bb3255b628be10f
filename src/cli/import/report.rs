//! What an import did, table by table: rows read, written, found already
//! imported, skipped (with why), and kept with a change (with what).

use std::collections::BTreeMap;
use std::fmt;

/// One source table's counts.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct TableReport {
    pub read: u64,
    pub written: u64,
    /// Already in the store (an earlier run): left as they are.
    pub present: u64,
    /// Not written, by reason.
    pub skipped: BTreeMap<String, u64>,
    /// Written with something lost or changed, by what.
    pub changed: BTreeMap<String, u64>,
}

impl TableReport {
    pub(crate) fn skip(&mut self, reason: impl Into<String>) {
        *self.skipped.entry(reason.into()).or_insert(0) += 1;
    }

    pub(crate) fn change(&mut self, what: impl Into<String>) {
        *self.changed.entry(what.into()).or_insert(0) += 1;
    }

    pub(crate) fn skipped_total(&self) -> u64 {
        self.skipped.values().sum()
    }
}

/// The whole import's report, in the order the tables are read.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Report {
    pub tables: Vec<(&'static str, TableReport)>,
    /// Lines about a column of rows counted above (written with them, so
    /// not counted again in the rows written).
    details: Vec<&'static str>,
}

impl Report {
    pub(crate) fn add(&mut self, table: &'static str, report: TableReport) {
        self.tables.push((table, report));
    }

    /// A line about a part of rows another line counts.
    pub(crate) fn add_detail(&mut self, name: &'static str, report: TableReport) {
        self.details.push(name);
        self.add(name, report);
    }

    /// Rows written.
    pub(crate) fn written(&self) -> u64 {
        self.tables
            .iter()
            .filter(|(name, _)| !self.details.contains(name))
            .map(|(_, t)| t.written)
            .sum()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<38} {:>9} {:>9} {:>9} {:>9}",
            "table", "read", "written", "already", "skipped"
        )?;
        for (name, t) in &self.tables {
            writeln!(
                f,
                "{name:<38} {:>9} {:>9} {:>9} {:>9}",
                t.read,
                t.written,
                t.present,
                t.skipped_total()
            )?;
        }
        let mut first = true;
        for (name, t) in &self.tables {
            for (reason, n) in &t.skipped {
                if first {
                    writeln!(f, "skipped:")?;
                    first = false;
                }
                writeln!(f, "  {name}: {n} {reason}")?;
            }
        }
        let mut first = true;
        for (name, t) in &self.tables {
            for (what, n) in &t.changed {
                if first {
                    writeln!(f, "written with a change:")?;
                    first = false;
                }
                writeln!(f, "  {name}: {n} {what}")?;
            }
        }
        if self.written() == 0 {
            writeln!(
                f,
                "nothing written: the store already holds everything this import would write"
            )?;
        } else {
            writeln!(f, "{} row(s) written", self.written())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_names_its_reasons_and_says_when_nothing_changed() {
        let mut messages = TableReport {
            read: 5,
            written: 3,
            present: 1,
            ..TableReport::default()
        };
        messages.skip("of a channel chat_channels does not hold");
        messages.change("deleted (kept, hidden from history)");
        let mut r = Report::default();
        r.add("chat_messages", messages);
        let text = r.to_string();
        assert!(
            text.contains(&format!(
                "{:<38}{:>10}{:>10}{:>10}{:>10}",
                "chat_messages", 5, 3, 1, 1
            )),
            "{text}"
        );
        assert!(
            text.contains("chat_messages: 1 of a channel chat_channels does not hold"),
            "{text}"
        );
        assert!(
            text.contains("written with a change:\n  chat_messages: 1 deleted"),
            "{text}"
        );
        assert!(text.contains("3 row(s) written"), "{text}");

        let mut again = Report::default();
        again.add(
            "chat_messages",
            TableReport {
                read: 5,
                present: 4,
                ..TableReport::default()
            },
        );
        assert!(again.to_string().contains("nothing written"), "{again}");
    }
}

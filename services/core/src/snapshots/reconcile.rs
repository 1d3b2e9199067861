//! Change detection: which registered tables a catalog's listing says
//! moved, so that only those cost a metadata read. A catalog commit writes
//! a new metadata file, so a table whose listed metadata location is the
//! one the log last read has nothing new.

use crate::Millis;

/// What the log last read of a table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Known {
    pub metadata_location: Option<String>,
    /// Why the last refresh failed, if it did (it is on the table).
    pub error: Option<String>,
}

/// What to do with one registered table after a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The log is up to date.
    Unchanged,
    /// Read its metadata.
    Read,
    /// The catalog does not list it: record that, without a call (unless
    /// the table already says so: nothing to write).
    Missing,
}

/// `listed`: `None` when the listing does not hold the table, else the
/// location it gives (`None` when the entry is not an Iceberg table).
/// `missing` is the error a missing table records: a table that already
/// carries it costs nothing more, pass after pass.
pub fn verdict(known: Option<&Known>, listed: Option<Option<&str>>, missing: &str) -> Verdict {
    let failed = known.is_some_and(|k| k.error.is_some());
    match (known, listed) {
        (Some(k), None) if k.error.as_deref() == Some(missing) => Verdict::Unchanged,
        (_, None) => Verdict::Missing,
        // Not an Iceberg table (yet): a read says why, once.
        (Some(k), Some(None)) if failed && k.metadata_location.is_none() => Verdict::Unchanged,
        (_, Some(None)) => Verdict::Read,
        (Some(k), Some(Some(at))) if !failed && k.metadata_location.as_deref() == Some(at) => {
            Verdict::Unchanged
        }
        (_, Some(Some(_))) => Verdict::Read,
    }
}

/// Why a table's log was last brought up to date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// A reconcile pass: the catalog's listing showed it unchanged, or its
    /// location moved and it was read (REST catalogs: read every pass).
    Listing,
    /// An AWS event said the table changed.
    Event,
    /// An API call needed the log current (a hydration starting, a
    /// retention question, a compaction's check, a refresh asked for).
    OnDemand,
    /// A bookmark batch or a progress report named a snapshot the log did
    /// not hold.
    Batch,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Listing => "listing",
            Cause::Event => "event",
            Cause::OnDemand => "on_demand",
            Cause::Batch => "batch",
        }
    }

    pub fn parse(text: &str) -> Option<Cause> {
        [Cause::Listing, Cause::Event, Cause::OnDemand, Cause::Batch]
            .into_iter()
            .find(|c| c.as_str() == text)
    }
}

/// A catalog's last completed reconcile pass: when its listing began, and
/// the namespaces whose listing failed (their tables were not confirmed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub at: Millis,
    pub unlisted: Vec<String>,
}

/// As of when a table's log is known to match its catalog, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    pub checked_at: Millis,
    pub by: Cause,
}

/// A table's freshness: its last successful refresh, or a later listing
/// pass that confirmed it (its namespace was listed and the table was not
/// failing: a failing table is read by every pass, so only a success
/// confirms it). `None` before the first of either.
pub fn freshness(
    table: &str,
    refreshed: Option<(Millis, Cause)>,
    failing: bool,
    listed: Option<&Listed>,
) -> Option<Freshness> {
    let namespace = table.rsplit_once('.').map_or("", |(ns, _)| ns);
    let confirmed = listed
        .filter(|l| !failing && !l.unlisted.iter().any(|u| u == namespace))
        .map(|l| Freshness {
            checked_at: l.at,
            by: Cause::Listing,
        });
    let refreshed = refreshed.map(|(checked_at, by)| Freshness { checked_at, by });
    match (refreshed, confirmed) {
        (Some(r), Some(c)) if c.checked_at > r.checked_at => Some(c),
        (Some(r), _) => Some(r),
        (None, c) => c,
    }
}

/// How long a reconcile pass of `listing_calls` calls should take at the
/// least, within `calls_per_second` and never sooner than `floor`: half the
/// budget goes to listings, the rest to the reads of what moved and to
/// nudged refreshes.
pub fn interval(
    listing_calls: u64,
    calls_per_second: f64,
    floor: std::time::Duration,
) -> std::time::Duration {
    let seconds = listing_calls as f64 / (calls_per_second.max(0.1) / 2.0);
    floor.max(std::time::Duration::from_secs_f64(seconds))
}

/// Listing calls for `tables` tables in a namespace read by pages of
/// `page` (at least one, for an empty namespace).
pub fn pages(tables: usize, page: usize) -> u64 {
    tables.div_ceil(page.max(1)).max(1) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const GONE: &str = "catalog `c` has no table `a.t`";

    fn known(at: Option<&str>, failed: bool) -> Known {
        Known {
            metadata_location: at.map(str::to_owned),
            error: failed.then(|| "catalog `c` is unavailable: timeout".to_owned()),
        }
    }

    fn verdict(known: Option<&Known>, listed: Option<Option<&str>>) -> Verdict {
        super::verdict(known, listed, GONE)
    }

    #[test]
    fn only_a_moved_location_or_a_failure_costs_a_read() {
        let read = known(Some("s3://t/m/1.json"), false);
        assert_eq!(
            verdict(Some(&read), Some(Some("s3://t/m/1.json"))),
            Verdict::Unchanged
        );
        assert_eq!(
            verdict(Some(&read), Some(Some("s3://t/m/2.json"))),
            Verdict::Read
        );
        // Never read, or last read failed: read.
        assert_eq!(verdict(None, Some(Some("s3://t/m/1.json"))), Verdict::Read);
        let failed = known(Some("s3://t/m/1.json"), true);
        assert_eq!(
            verdict(Some(&failed), Some(Some("s3://t/m/1.json"))),
            Verdict::Read
        );
        // Gone from the catalog: recorded without a call, once.
        assert_eq!(verdict(Some(&read), None), Verdict::Missing);
        assert_eq!(verdict(None, None), Verdict::Missing);
        assert_eq!(verdict(Some(&failed), None), Verdict::Missing);
        let gone = Known {
            metadata_location: None,
            error: Some(GONE.to_owned()),
        };
        assert_eq!(verdict(Some(&gone), None), Verdict::Unchanged);
        // Listed without a location: read once; its failure then stands.
        assert_eq!(verdict(None, Some(None)), Verdict::Read);
        assert_eq!(
            verdict(Some(&known(None, true)), Some(None)),
            Verdict::Unchanged
        );
    }

    #[test]
    fn a_listing_confirms_a_table_unless_its_namespace_failed_or_the_table_fails() {
        let listed = Listed {
            at: Millis(2_000),
            unlisted: vec!["broken".into()],
        };
        let read = Some((Millis(1_000), Cause::Event));
        let at = |f: Option<Freshness>| f.map(|f| (f.checked_at.0, f.by));
        assert_eq!(
            at(freshness("sales.orders", read, false, Some(&listed))),
            Some((2_000, Cause::Listing))
        );
        assert_eq!(
            at(freshness("broken.orders", read, false, Some(&listed))),
            Some((1_000, Cause::Event))
        );
        assert_eq!(
            at(freshness("sales.orders", read, true, Some(&listed))),
            Some((1_000, Cause::Event))
        );
        // A refresh after the pass wins; no refresh yet: the pass alone.
        let later = Some((Millis(3_000), Cause::Batch));
        assert_eq!(
            at(freshness("sales.orders", later, false, Some(&listed))),
            Some((3_000, Cause::Batch))
        );
        assert_eq!(
            at(freshness("sales.orders", None, false, Some(&listed))),
            Some((2_000, Cause::Listing))
        );
        assert_eq!(at(freshness("sales.orders", None, false, None)), None);
        for c in [Cause::Listing, Cause::Event, Cause::OnDemand, Cause::Batch] {
            assert_eq!(Cause::parse(c.as_str()), Some(c));
        }
    }

    #[test]
    fn the_interval_follows_the_budget_and_the_table_count() {
        let floor = Duration::from_secs(30);
        // 100,000 tables in pages of 100 at 50 calls/s: 1,000 pages, 40 s.
        let calls: u64 = (0..100).map(|_| pages(1_000, 100)).sum();
        assert_eq!(calls, 1_000);
        assert_eq!(interval(calls, 50.0, floor), Duration::from_secs(40));
        // Few tables: the floor.
        assert_eq!(interval(3, 50.0, floor), floor);
        assert_eq!(pages(0, 100), 1);
        assert_eq!(pages(101, 100), 2);
    }
}

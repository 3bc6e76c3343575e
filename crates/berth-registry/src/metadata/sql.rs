//! What the SQL implementations share: the clauses of paged listings, and the counting
//! query behind [`super::MetadataStore::content_totals`].

use sqlx::Database;
use sqlx::query::Query;

use super::{ContentTotals, Selection};

/// What a [`Selection`] puts in a listing's query over its `key` and `time` columns: the
/// condition, the order and the limit, with placeholders from `$first` on, and the values
/// they take, bound by [`Clause::bind`].
pub(super) struct Clause {
    pub(super) filter: String,
    pub(super) order: String,
    pub(super) limit: String,
    /// The time a page by time starts after (bound first when present).
    time: Option<i64>,
    key: String,
    n: i64,
}

impl Clause {
    pub(super) fn of(select: Selection<'_>, key: &str, time: &str, first: usize) -> Clause {
        let (k, t) = (format!("${first}"), format!("${}", first + 1));
        match select {
            Selection::Page { last, n } => Clause {
                filter: format!("{key} > {k}"),
                order: key.to_owned(),
                limit: t,
                time: None,
                key: last.unwrap_or("").to_owned(),
                n: i64::from(n),
            },
            Selection::One(one) => Clause {
                filter: format!("{key} = {k}"),
                order: key.to_owned(),
                limit: t,
                time: None,
                key: one.to_owned(),
                n: 1,
            },
            Selection::ByTime {
                newest_first,
                last,
                n,
            } => {
                // Without a cursor, a time no row has: every row comes after it.
                let (at, after) =
                    last.unwrap_or((if newest_first { i64::MAX } else { i64::MIN }, ""));
                let (before, direction) = if newest_first {
                    ("<", "DESC")
                } else {
                    (">", "ASC")
                };
                // Here `$first` is the time and `$first + 1` the key.
                let (at_param, key_param) = (k, t);
                Clause {
                    filter: format!(
                        "({time} {before} {at_param} OR ({time} = {at_param} AND {key} > {key_param}))"
                    ),
                    order: format!("{time} {direction}, {key}"),
                    limit: format!("${}", first + 2),
                    time: Some(at),
                    key: after.to_owned(),
                    n: i64::from(n),
                }
            }
        }
    }

    /// Binds the clause's values, in the order of its placeholders, after those bound
    /// already.
    pub(super) fn bind<'q, DB>(
        &self,
        query: Query<'q, DB, DB::Arguments>,
    ) -> Query<'q, DB, DB::Arguments>
    where
        DB: Database,
        i64: for<'t> sqlx::Encode<'t, DB> + sqlx::Type<DB>,
        String: for<'t> sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    {
        let query = match self.time {
            Some(at) => query.bind(at),
            None => query,
        };
        query.bind(self.key.clone()).bind(self.n)
    }
}

/// A listing's query: made of constant fragments and a [`Clause`]'s, never of anything a
/// request carries (values are bound), hence safe.
pub(super) fn listing(sql: String) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(sql)
}

/// How much the store holds, in one statement both databases run (PostgreSQL's `SUM` of a
/// `BIGINT` is a `NUMERIC`, hence the cast); read by [`content_totals`].
pub(super) const CONTENT_TOTALS: &str = "SELECT (SELECT COUNT(*) FROM repositories), \
     (SELECT COUNT(*) FROM manifests), \
     (SELECT COUNT(*) FROM blobs WHERE state = 'present'), \
     (SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM blobs WHERE state = 'present'), \
     (SELECT COUNT(*) FROM uploads)";

/// The row [`CONTENT_TOTALS`] answers.
pub(super) fn content_totals<R>(row: &R) -> ContentTotals
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let count = |i: usize| u64::try_from(row.get::<i64, _>(i)).unwrap_or(0);
    ContentTotals {
        repositories: count(0),
        manifests: count(1),
        blobs: count(2),
        blob_bytes: count(3),
        uploads: count(4),
    }
}

//! PostgreSQL: the list and filter statements the store really runs use their indexes. The
//! statements are read back from the connection's prepared statements (`pg_prepared_statements`,
//! where diesel's statement cache puts them) and `EXPLAIN EXECUTE`d with values, both as a
//! custom plan and as the generic plan PostgreSQL switches to after five executions. No timing:
//! the plan's shape is the assertion. Also: the per-type count table agrees with `COUNT(*)`
//! before and after its deltas are folded.

use diesel::sql_types::Text;
use diesel::RunQueryDsl;

use super::*;

#[derive(diesel::QueryableByName)]
struct Prepared {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    statement: String,
}

#[derive(diesel::QueryableByName)]
struct PlanLine {
    #[diesel(sql_type = Text, column_name = "QUERY PLAN")]
    line: String,
}

/// The plan of prepared statement `name` with `args` (SQL literals), custom and generic.
fn plans(c: &mut DbConnection, name: &str, args: &str) -> Vec<String> {
    ["auto", "force_generic_plan"]
        .iter()
        .map(|mode| {
            c.batch_execute(&format!("SET plan_cache_mode = {mode}"))
                .unwrap();
            let args = if args.is_empty() {
                String::new()
            } else {
                format!("({args})")
            };
            let lines: Vec<PlanLine> = diesel::sql_query(format!("EXPLAIN EXECUTE {name}{args}"))
                .load(c)
                .unwrap();
            lines
                .into_iter()
                .map(|l| l.line)
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect()
}

/// The one prepared statement whose text contains every one of `parts`.
fn prepared<'a>(all: &'a [Prepared], parts: &[&str]) -> &'a Prepared {
    let found: Vec<&Prepared> = all
        .iter()
        .filter(|p| parts.iter().all(|part| p.statement.contains(part)))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one prepared statement with {parts:?}, got {:?}",
        found.iter().map(|p| &p.statement).collect::<Vec<_>>()
    );
    found[0]
}

fn page(s: &Store, start_index: u64, filter: Option<Filter>) -> Page<StoredResource> {
    s.search(
        ResourceKind::User,
        &SearchQuery {
            filter,
            start_index,
            count: 100,
            ..SearchQuery::default()
        },
        &user_schema(),
    )
    .unwrap()
}

#[test]
fn store_pg_page_and_filter_queries_use_their_indexes() {
    // One connection, so that the statements the searches prepared are the ones explained.
    let Some(db) = postgres_db_with(1) else {
        return;
    };
    let s = &db.store;
    const USERS: i64 = 5000;
    {
        let mut c = s.read_conn().unwrap();
        c.batch_execute(&format!(
            "INSERT INTO resources (id, resource_type, doc, user_name_folded, created, last_modified, version) \
             SELECT lpad(i::text, 8, '0'), 'User', '{{\"userName\":\"u' || i || '\"}}', 'u' || i, \
             '2026-01-01T00:00:00.000000Z', '2026-01-01T00:00:00.000000Z', 1 \
             FROM generate_series(1, {USERS}) AS i"
        ))
        .unwrap();
        // Its own statement: VACUUM cannot run inside the implicit transaction of a batch.
        c.batch_execute("VACUUM ANALYZE resources").unwrap();
    }
    // Filter eq: one row, found through the userName index.
    let eq = page(
        s,
        1,
        Some(cmp(AttrPath::simple("userName"), CompareOp::Eq, "U42")),
    );
    assert_eq!(eq.total_results, 1);
    assert_eq!(eq.resources[0].id, "00000042");
    // A shallow and a deep page in the default (id) order, with their totals.
    let shallow = page(s, 11, None);
    assert_eq!(shallow.total_results, USERS as u64);
    assert_eq!(shallow.resources[0].id, "00000011");
    let deep = page(s, 4801, None);
    assert_eq!(deep.total_results, USERS as u64);
    assert_eq!(deep.resources.len(), 100);
    assert_eq!(deep.resources[0].id, "00004801");
    assert_eq!(deep.resources[99].id, "00004900");
    // Past the end: empty, with the total.
    let past = page(s, USERS as u64 + 1, None);
    assert!(past.resources.is_empty());
    assert_eq!(past.total_results, USERS as u64);

    let mut c = s.read_conn().unwrap();
    let all: Vec<Prepared> =
        diesel::sql_query("SELECT name, statement FROM pg_prepared_statements")
            .load(&mut *c)
            .unwrap();

    let q = prepared(&all, &["user_name_folded = $1", "ORDER BY id"]);
    for plan in plans(&mut c, &q.name, "'u42', 101") {
        assert!(!plan.contains("Seq Scan"), "eq scans the table:\n{plan}");
        assert!(
            plan.contains("resources_user_name_uq")
                || plan.contains("resources_user_name_sort_idx"),
            "eq without the userName index:\n{plan}"
        );
    }

    // The page: the rows before it are stepped over in the (resource_type, id) index alone,
    // and the page is read in id order from an index (no sort of the whole type).
    let q = prepared(&all, &["LIMIT 1 OFFSET $1", "ORDER BY id ASC"]);
    for plan in plans(&mut c, &q.name, "4800, 101") {
        assert!(!plan.contains("Seq Scan"), "page scans the table:\n{plan}");
        assert!(!plan.contains("Sort"), "page sorts:\n{plan}");
        assert!(
            plan.contains("Index Only Scan using resources_type_id_idx"),
            "the seek is not index-only:\n{plan}"
        );
    }

    // totalResults of an unfiltered list: the count table, not COUNT(*) over the type.
    let q = prepared(
        &all,
        &["SELECT COALESCE((SELECT n FROM resource_type_counts"],
    );
    for plan in plans(&mut c, &q.name, "") {
        assert!(
            !plan.contains("Seq Scan on resources"),
            "count scans:\n{plan}"
        );
    }
    c.batch_execute("RESET plan_cache_mode").unwrap();
    drop(c);

    // The 5,000 inserts left as many deltas; the counts above folded them into the base.
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut c = s.read_conn().unwrap();
    let left: N = diesel::sql_query("SELECT COUNT(*) AS n FROM resource_type_count_deltas")
        .get_result(&mut *c)
        .unwrap();
    assert_eq!(left.n, 0, "deltas folded");
    drop(c);
    // Writes through the store keep the count: one created, one deleted, one created.
    let a = user(s, "count-a");
    let _b = user(s, "count-b");
    s.delete(ResourceKind::User, &a.id, None).unwrap();
    assert_eq!(page(s, 1, None).total_results, USERS as u64 + 1);
    let mut c = s.read_conn().unwrap();
    let real: N =
        diesel::sql_query("SELECT COUNT(*) AS n FROM resources WHERE resource_type = 'User'")
            .get_result(&mut *c)
            .unwrap();
    assert_eq!(real.n, USERS + 1);
}

/// Pages sorted by an indexed column, as `by_column` builds them for PostgreSQL (first pages,
/// deep `startIndex`, cursors after a row with a value and after one without, both
/// directions): each part walks the column's index in the sort order, forwards or backwards,
/// and no part sorts its rows (only the bounded merge is sorted). The parts' `NULLS FIRST` /
/// `NULLS LAST` matches the indexes' (their NULLs first), and the absent part orders by the
/// column before the id; without them PostgreSQL sorted every User, or every User without a
/// value, for each page.
#[test]
fn store_pg_sorted_pages_walk_their_indexes() {
    let Some(db) = postgres_db_with(1) else {
        return;
    };
    let s = &db.store;
    let mut c = s.read_conn().unwrap();
    // Every tenth User without a displayName or externalId, so the absent parts have rows.
    c.batch_execute(
        "INSERT INTO resources (id, resource_type, doc, user_name_folded, display_name_folded, \
         external_id, created, last_modified, version) \
         SELECT lpad(i::text, 8, '0'), 'User', '{}', 'u' || lpad(i::text, 5, '0'), \
         CASE WHEN i % 10 = 0 THEN NULL ELSE 'd' || lpad((i * 7919 % 5000)::text, 5, '0') END, \
         CASE WHEN i % 10 = 0 THEN NULL ELSE 'e' || lpad(i::text, 5, '0') END, \
         '2026-01-01T00:00:00.' || lpad(i::text, 6, '0') || 'Z', \
         '2026-01-02T00:00:00.' || lpad(i::text, 6, '0') || 'Z', 1 \
         FROM generate_series(1, 5000) AS i",
    )
    .unwrap();
    c.batch_execute("VACUUM ANALYZE resources").unwrap();
    let mut base = sql::Sql::<()>::new(" FROM resources WHERE resources.resource_type = ");
    base.push(ResourceKind::User.sql_literal());
    for (col, index, key) in [
        ("user_name_folded", "resources_user_name_sort_idx", "u02500"),
        (
            "display_name_folded",
            "resources_display_name_idx",
            "d02500",
        ),
        ("external_id", "resources_external_id_idx", "e02500"),
        (
            "created",
            "resources_created_idx",
            "2026-01-01T00:00:00.002500Z",
        ),
        (
            "last_modified",
            "resources_last_modified_idx",
            "2026-01-02T00:00:00.002500Z",
        ),
    ] {
        for asc in [true, false] {
            for (after, offset) in [
                (None, 0),
                (None, 4000),
                (Some((Some(key), "00002500")), 0),
                (Some((None, "00002500")), 0),
            ] {
                let mut q = sql::Sql::<Text>::new("EXPLAIN ");
                q.append(&crate::store::search::by_column(
                    &base, col, after, asc, 100, offset, false,
                ));
                let lines: Vec<String> = q.load(&mut *c).unwrap();
                let plan = lines.join("\n");
                let case = format!("{col} asc={asc} after={after:?} offset={offset}");
                // The page's own rows are joined back (`resources r`), however PostgreSQL
                // likes: on this small table a hash join over a scan can be the cheapest.
                assert!(
                    !lines
                        .iter()
                        .any(|l| l.contains("Seq Scan on resources") && !l.contains("resources r ")),
                    "{case}: a part scans the table:\n{plan}"
                );
                assert!(
                    plan.contains(&format!("using {index}")),
                    "{case}: not on {index}:\n{plan}"
                );
                // Only the bounded merge is sorted, and its key starts with whether the value
                // is absent; a part's own sort would be by the column or the id.
                assert!(
                    lines
                        .iter()
                        .filter_map(|l| l.trim().strip_prefix("Sort Key: "))
                        .all(|k| k.starts_with("((")),
                    "{case}: a part sorts its rows:\n{plan}"
                );
            }
        }
    }
}

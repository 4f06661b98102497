//! Search: filter push-down against in-memory evaluation, paging, sorting, cursors, totals.

use super::*;

fn seed(s: &Store) {
    let docs = [
        json!({"userName": "bjensen", "displayName": "Barbara Jensen", "active": true, "title": "Tour Guide",
               "name": {"givenName": "Barbara", "familyName": "Jensen"}, "externalId": "E-1",
               "emails": [{"value": "bjensen@Example.com", "type": "work", "primary": true},
                          {"value": "babs@home.org", "type": "home"}],
               ENTERPRISE: {"employeeNumber": "701984", "manager": {"value": "M-1"}}}),
        json!({"userName": "JSmith", "displayName": "John Smith", "active": false,
               "name": {"givenName": "John"}, "externalId": "e-1",
               "emails": [{"value": "john@example.com", "type": "home"}],
               ENTERPRISE: {"employeeNumber": "701985", "manager": {"value": "m-1"}}}),
        json!({"userName": "a_b%c\\d", "displayName": "Wild Card", "title": "Tour Manager",
               "emails": [{"value": "wild@example.org"}]}),
        json!({"userName": "abc", "active": true, "emails": [{"type": "work"}]}),
        json!({"userName": "Zoe", "displayName": "zoe", "title": "", "externalId": "Z"}),
        json!({"userName": "ümlaut", "displayName": "Ünïcode"}),
    ];
    for d in docs {
        s.create(ResourceKind::User, obj(d), None).unwrap();
    }
    for i in 0..40 {
        s.create(
            ResourceKind::User,
            obj(json!({"userName": format!("bulk{i:02}"), "active": i % 2 == 0,
                       "emails": [{"value": format!("bulk{i}@example.com"), "type": if i % 3 == 0 {"work"} else {"home"}}]})),
            None,
        )
        .unwrap();
    }
}

fn parse_ish(spec: &str) -> Filter {
    // A tiny prefix notation for tests (the real parser lives in scim-schema):
    // "and|or <f> ; <f>", "not <f>", "pr path", "path op value".
    fn path(p: &str) -> AttrPath {
        if let Some(rest) = p.strip_prefix(&format!("{ENTERPRISE}:")) {
            let mut parts = rest.splitn(2, '.');
            let name = parts.next().unwrap();
            let mut a = match parts.next() {
                Some(sub) => AttrPath::with_sub(name, sub),
                None => AttrPath::simple(name),
            };
            a.urn = Some(scim_schema::CiString::from(ENTERPRISE));
            return a;
        }
        match p.split_once('.') {
            Some((a, b)) => AttrPath::with_sub(a, b),
            None => AttrPath::simple(p),
        }
    }
    let spec = spec.trim();
    if let Some(rest) = spec.strip_prefix("and ") {
        let (a, b) = rest.split_once(" ; ").unwrap();
        return Filter::And(Box::new(parse_ish(a)), Box::new(parse_ish(b)));
    }
    if let Some(rest) = spec.strip_prefix("or ") {
        let (a, b) = rest.split_once(" ; ").unwrap();
        return Filter::Or(Box::new(parse_ish(a)), Box::new(parse_ish(b)));
    }
    if let Some(rest) = spec.strip_prefix("not ") {
        return Filter::Not(Box::new(parse_ish(rest)));
    }
    if let Some(rest) = spec.strip_prefix("pr ") {
        return Filter::Present(path(rest));
    }
    if let Some(rest) = spec.strip_prefix("vp ") {
        let (attr, inner) = rest.split_once(' ').unwrap();
        return Filter::ValuePath {
            path: AttrPath::simple(attr),
            filter: Box::new(parse_ish(inner)),
        };
    }
    let mut it = spec.splitn(3, ' ');
    let (p, op, v) = (it.next().unwrap(), it.next().unwrap(), it.next().unwrap());
    let op = match op {
        "eq" => CompareOp::Eq,
        "ne" => CompareOp::Ne,
        "co" => CompareOp::Co,
        "sw" => CompareOp::Sw,
        "ew" => CompareOp::Ew,
        "gt" => CompareOp::Gt,
        "ge" => CompareOp::Ge,
        "lt" => CompareOp::Lt,
        "le" => CompareOp::Le,
        _ => panic!("op {op}"),
    };
    let value = match v {
        "true" => CompValue::Bool(true),
        "false" => CompValue::Bool(false),
        _ => CompValue::Str(v.trim_matches('"').to_string()),
    };
    Filter::Compare {
        path: path(p),
        op,
        value,
    }
}

#[test]
fn store_filter_push_down_matches_memory() {
    let filters = [
        "userName eq BJENSEN",
        "userName ne bjensen",
        "userName co \"_b%\"",
        "userName co %",
        "userName sw a",
        "userName sw A_",
        "userName ew \\d",
        "userName gt m",
        "userName le bulk05",
        "userName sw Ü",
        "displayName eq \"barbara jensen\"",
        "displayName co smith",
        "pr displayName",
        "not pr displayName",
        "externalId eq e-1",
        "externalId eq E-1",
        "externalId co E",
        "externalId sw e",
        "pr externalId",
        "active eq true",
        "active eq false",
        "active ne true",
        "pr active",
        "emails.value eq JOHN@example.com",
        "emails.value co example.com",
        "emails.value ew .org",
        "emails.value ne john@example.com",
        "emails.type eq work",
        "pr emails.value",
        "vp emails and type eq work ; value co example",
        "vp emails not type eq work",
        "vp emails and type eq home ; value sw bulk1",
        "employeeNumber eq 701984",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber sw 7019",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq M-1",
        "and userName sw bulk ; active eq true",
        "or userName eq zoe ; emails.type eq work",
        "not and userName sw bulk ; active eq true",
        "not or active eq true ; pr externalId",
        // Not pushable (no column): in memory over a narrowed set, or batched.
        "title eq \"tour guide\"",
        "pr title",
        "and title sw tour ; active eq true",
        "or title co manager ; userName eq zoe",
        "not title co guide",
        "name.givenName sw J",
        "and not name.givenName eq john ; emails.value co example",
        "meta.created gt 2000-01-01T00:00:00Z",
        "meta.lastModified lt 2000-01-01T00:00:00Z",
        "id gt 0",
    ];
    each_backend(|db| {
        let s = &db.store;
        seed(s);
        let schema = user_schema();
        let all = s
            .search(
                ResourceKind::User,
                &SearchQuery {
                    count: 1000,
                    ..Default::default()
                },
                &schema,
            )
            .unwrap();
        assert_eq!(all.total_results, 46);
        for spec in filters {
            let f = parse_ish(spec);
            let mut expected: Vec<String> = all
                .resources
                .iter()
                .filter(|r| in_memory_filter::matches(&f, &r.doc, &schema))
                .map(|r| r.id.clone())
                .collect();
            expected.sort();
            let q = SearchQuery {
                filter: Some(f),
                count: 1000,
                ..Default::default()
            };
            let page = s.search(ResourceKind::User, &q, &schema).unwrap();
            let got: Vec<String> = page.resources.iter().map(|r| r.id.clone()).collect();
            assert_eq!(got, expected, "{}: filter {spec}", db.name);
            assert_eq!(
                page.total_results as usize,
                expected.len(),
                "{}: total for {spec}",
                db.name
            );
        }
        // Groups: members.value pushed down.
        let gs = group_schema();
        let u = &all.resources[0].id;
        let g1 = group(s, "with", &[u]);
        group(s, "without", &[]);
        let q = SearchQuery {
            filter: Some(cmp(
                AttrPath::with_sub("members", "value"),
                CompareOp::Eq,
                u,
            )),
            count: 10,
            ..Default::default()
        };
        let page = s.search(ResourceKind::Group, &q, &gs).unwrap();
        assert_eq!(
            page.resources
                .iter()
                .map(|r| r.id.clone())
                .collect::<Vec<_>>(),
            vec![g1.id.clone()]
        );
        let q = SearchQuery {
            filter: Some(parse_ish(&format!("vp members value eq {u}"))),
            count: 10,
            ..Default::default()
        };
        assert_eq!(
            s.search(ResourceKind::Group, &q, &gs)
                .unwrap()
                .total_results,
            1
        );
    });
}

#[test]
fn store_paging_sorting_and_cursors() {
    each_backend(|db| {
        let s = &db.store;
        seed(s);
        let schema = user_schema();
        for (sort, desc, filter) in [
            (None, false, None),
            (Some(AttrPath::simple("userName")), false, None),
            (
                Some(AttrPath::simple("userName")),
                true,
                Some("userName sw bulk"),
            ),
            (Some(AttrPath::simple("displayName")), false, None),
            (Some(AttrPath::simple("displayName")), true, None),
            (Some(AttrPath::simple("title")), false, None),
            (
                Some(AttrPath::simple("userName")),
                false,
                Some("or title co manager ; active eq true"),
            ),
        ] {
            let base = SearchQuery {
                filter: filter.map(parse_ish),
                sort_by: sort.clone(),
                descending: desc,
                ..Default::default()
            };
            let all = s
                .search(
                    ResourceKind::User,
                    &SearchQuery {
                        count: 1000,
                        ..base.clone()
                    },
                    &schema,
                )
                .unwrap();
            let all_ids: Vec<String> = all.resources.iter().map(|r| r.id.clone()).collect();
            // Sorted as the in-memory sort key says.
            if let Some(p) = &sort {
                let keys: Vec<_> = all
                    .resources
                    .iter()
                    .map(|r| in_memory_filter::sort_key(&r.doc, p, &schema))
                    .collect();
                for w in keys.windows(2) {
                    let o = in_memory_filter::cmp_keys(&w[0], &w[1]);
                    assert!(
                        if desc { o.is_ge() } else { o.is_le() },
                        "{}: {sort:?} {desc}: {keys:?}",
                        db.name
                    );
                }
            }
            // startIndex/count.
            let p2 = s
                .search(
                    ResourceKind::User,
                    &SearchQuery {
                        start_index: 8,
                        count: 7,
                        ..base.clone()
                    },
                    &schema,
                )
                .unwrap();
            let ids: Vec<String> = p2.resources.iter().map(|r| r.id.clone()).collect();
            assert_eq!(
                ids,
                all_ids.iter().skip(7).take(7).cloned().collect::<Vec<_>>(),
                "{}: {sort:?}",
                db.name
            );
            assert_eq!(p2.total_results as usize, all_ids.len());
            // count=0.
            let p0 = s
                .search(
                    ResourceKind::User,
                    &SearchQuery {
                        count: 0,
                        ..base.clone()
                    },
                    &schema,
                )
                .unwrap();
            assert!(p0.resources.is_empty());
            assert_eq!(p0.total_results as usize, all_ids.len());
            // Cursors walk the same order.
            let mut walked = Vec::new();
            let mut cursor = Some(String::new());
            let mut pages = 0;
            while let Some(c) = cursor {
                let p = s
                    .search(
                        ResourceKind::User,
                        &SearchQuery {
                            count: 10,
                            cursor: Some(c),
                            ..base.clone()
                        },
                        &schema,
                    )
                    .unwrap();
                walked.extend(p.resources.iter().map(|r| r.id.clone()));
                cursor = p.next_cursor;
                pages += 1;
                assert!(pages < 20);
            }
            assert_eq!(walked, all_ids, "{}: cursor walk {sort:?} {desc}", db.name);
        }
        // A cursor from another query is rejected.
        let p = s
            .search(
                ResourceKind::User,
                &SearchQuery {
                    count: 5,
                    cursor: Some(String::new()),
                    ..Default::default()
                },
                &schema,
            )
            .unwrap();
        let other = SearchQuery {
            count: 5,
            cursor: p.next_cursor,
            descending: true,
            ..Default::default()
        };
        assert!(matches!(
            s.search(ResourceKind::User, &other, &schema),
            Err(HubError::Scim(_))
        ));
    });
}

/// totalResults stays exact however it is obtained: from a short last page, from the per-type
/// count cache (SQLite), or from COUNT(*); and it follows creates and deletes at once.
#[test]
fn store_total_results_follow_writes() {
    each_backend(|db| {
        let s = &db.store;
        seed(s);
        let schema = user_schema();
        let total = |q: SearchQuery| s.search(ResourceKind::User, &q, &schema).unwrap();
        let n = total(SearchQuery {
            count: 1000,
            ..Default::default()
        })
        .resources
        .len() as u64;
        assert!(n > 10, "{}", db.name);
        let ids =
            |page: &Page| -> Vec<String> { page.resources.iter().map(|r| r.id.clone()).collect() };
        let shapes = |expected: u64| {
            for descending in [false, true] {
                let all = ids(&total(SearchQuery {
                    count: 1000,
                    descending,
                    ..Default::default()
                }));
                assert_eq!(all.len() as u64, expected, "{}", db.name);
                for (start_index, count) in [
                    (1, 0),
                    (1, 3),
                    (1, 1000),
                    (4, 3),
                    (n - 1, 5),
                    (n, 5),
                    (n + 7, 5),
                ] {
                    let q = SearchQuery {
                        start_index,
                        count,
                        descending,
                        ..Default::default()
                    };
                    let page = total(q);
                    assert_eq!(
                        page.total_results, expected,
                        "{}: startIndex {start_index} count {count}",
                        db.name
                    );
                    let want: Vec<String> = all
                        .iter()
                        .skip(start_index as usize - 1)
                        .take(count as usize)
                        .cloned()
                        .collect();
                    assert_eq!(
                        ids(&page),
                        want,
                        "{}: startIndex {start_index} count {count} desc {descending}",
                        db.name
                    );
                }
            }
            let first_cursor_page = total(SearchQuery {
                start_index: 5,
                count: 1000,
                cursor: Some(String::new()),
                ..Default::default()
            });
            assert_eq!(first_cursor_page.total_results, expected, "{}", db.name);
        };
        shapes(n);
        let extra = user(s, "count.extra");
        shapes(n + 1);
        s.delete(ResourceKind::User, &extra.id, None).unwrap();
        shapes(n);
        s.delete(ResourceKind::User, &extra.id, None).unwrap_err();
        shapes(n);
        // Filtered totals never come from the per-type cache.
        let filtered = total(SearchQuery {
            filter: Some(parse_ish("userName sw bulk")),
            count: 0,
            ..Default::default()
        });
        assert!(filtered.total_results < n, "{}", db.name);
    });
}

#[test]
fn store_type_count_cache_refuses_counts_older_than_a_commit() {
    let counts = TypeCounts::default();
    let before = counts.generation();
    counts.invalidate();
    counts.put(ResourceKind::User, before, 10);
    assert_eq!(counts.get(ResourceKind::User), None);
    let now = counts.generation();
    counts.put(ResourceKind::User, now, 11);
    assert_eq!(counts.get(ResourceKind::User), Some(11));
    assert_eq!(counts.get(ResourceKind::Group), None);
    counts.invalidate();
    assert_eq!(counts.get(ResourceKind::User), None);
}

/// A second process on the same SQLite file (two stores stand for two processes: each has its
/// own caches and writer): the first store's cached count and id ranks follow the other's
/// creates and deletes, and its own writes keep working as before.
#[test]
fn store_caches_follow_another_process_on_the_same_file() {
    let db = sqlite_db();
    let Cleanup::Files(path) = &db.cleanup else {
        panic!("sqlite_db is a file");
    };
    let other = Store::open(&format!("sqlite://{}", path.display())).unwrap();
    let s = &db.store;
    let schema = user_schema();
    let page = |start_index: u64| {
        s.search(
            ResourceKind::User,
            &SearchQuery {
                start_index,
                count: 1,
                ..Default::default()
            },
            &schema,
        )
        .unwrap()
    };
    for i in 0..3 {
        user(s, &format!("mine{i}"));
    }
    // Cached: the count, and the ranks loaded by a deep page.
    assert_eq!(page(1).total_results, 3);
    assert_eq!(page(3).resources.len(), 1);
    assert_eq!(page(4).resources.len(), 0);
    let created: Vec<String> = (0..2)
        .map(|i| {
            other
                .create(
                    ResourceKind::User,
                    obj(json!({"userName": format!("theirs{i}")})),
                    None,
                )
                .unwrap()
                .id
        })
        .collect();
    assert_eq!(page(1).total_results, 5);
    let last = page(5);
    assert_eq!(
        last.resources.len(),
        1,
        "the ranks missed the other's creates"
    );
    other.delete(ResourceKind::User, &created[0], None).unwrap();
    assert_eq!(page(1).total_results, 4);
    assert_eq!(page(5).resources.len(), 0);
    assert_eq!(page(4).resources.len(), 1);
    // This store's own writes are counted as before.
    user(s, "mine3");
    assert_eq!(page(1).total_results, 5);
    assert_eq!(page(5).resources.len(), 1);
}

/// What SQLite's planner does with a search's first page (the statement `search_sql` builds for
/// the default id order, and its `COUNT(*)`), as `EXPLAIN QUERY PLAN` lines.
fn sqlite_plans(s: &Store, filter: &str) -> (String, String) {
    use diesel::sql_types::{BigInt, Text};
    use diesel::RunQueryDsl;
    let schema = user_schema();
    let (frag, exact) = filter_sql::translate(ResourceKind::User, &schema, &parse_ish(filter));
    assert!(exact, "{filter} translates exactly");
    let mut base = sql::Sql::<()>::new(" FROM resources WHERE resources.resource_type = ");
    base.push(ResourceKind::User.sql_literal())
        .push(" AND ")
        .append(&frag.expect("a SQL condition"));
    let mut c = s.read_conn().unwrap();
    let mut explain = |head: &str, tail: &str| {
        let mut q = sql::Sql::<(BigInt, BigInt, BigInt, Text)>::new(head);
        q.append(&base).push(tail);
        let rows: Vec<(i64, i64, i64, String)> = q.load(&mut *c).unwrap();
        rows.into_iter()
            .map(|r| r.3)
            .collect::<Vec<_>>()
            .join(" | ")
    };
    let page = explain(
        "EXPLAIN QUERY PLAN SELECT id, doc, created, last_modified, version, NULL",
        " ORDER BY id ASC LIMIT 101",
    );
    let count = explain("EXPLAIN QUERY PLAN SELECT COUNT(*)", "");
    (page, count)
}

/// `sw` on a folded column is an index range (`>= prefix AND < successor`) in both the page
/// and its count; `eq` a point lookup; `co` cannot use a range and reads every User's folded
/// value from an index, never the table (see docs/performance.md for what that costs at 100,000).
#[test]
fn store_sqlite_plans_prefix_filters_as_index_ranges() {
    let db = sqlite_db();
    seed(&db.store);
    for (filter, index) in [
        ("userName sw bulk1", "resources_user_name"),
        ("displayName sw bar", "resources_display_name_idx"),
        ("externalId sw E", "resources_external_id"),
    ] {
        let (page, count) = sqlite_plans(&db.store, filter);
        let column = index_column(index);
        for plan in [&page, &count] {
            assert!(
                plan.contains(index) && plan.contains(&format!("{column}>? AND {column}<?")),
                "{filter}: not an index range: {plan}"
            );
        }
    }
    let (page, _) = sqlite_plans(&db.store, "userName eq bjensen");
    assert!(
        page.contains("resources_user_name") && page.contains("user_name_folded=?"),
        "eq: {page}"
    );
    let (page, count) = sqlite_plans(&db.store, "userName co jens");
    for plan in [&page, &count] {
        assert!(
            !plan.contains("user_name_folded<?"),
            "co is no range: {plan}"
        );
        assert!(
            plan.contains("resource_type=?"),
            "co scans Users only: {plan}"
        );
    }
}

fn index_column(index: &str) -> &'static str {
    match index {
        "resources_user_name" => "user_name_folded",
        "resources_display_name_idx" => "display_name_folded",
        _ => "external_id",
    }
}

/// A sorted page's `EXPLAIN QUERY PLAN`: the lines under its `present` and `absent` parts
/// (`None` where the cursor has left a part behind), and all lines.
struct SortedPlan {
    present: Option<Vec<String>>,
    absent: Option<Vec<String>>,
    all: Vec<String>,
}

/// The plan of a page `by_column` builds on every User.
fn sqlite_sorted_page_plan(
    s: &Store,
    col: &str,
    after: Option<(Option<&str>, &str)>,
    asc: bool,
    offset: u64,
) -> SortedPlan {
    use diesel::sql_types::{BigInt, Text};
    use diesel::RunQueryDsl;
    let mut base = sql::Sql::<()>::new(" FROM resources WHERE resources.resource_type = ");
    base.push(ResourceKind::User.sql_literal());
    let mut q = sql::Sql::<(BigInt, BigInt, BigInt, Text)>::new("EXPLAIN QUERY PLAN ");
    q.append(&crate::store::search::by_column(
        &base, col, after, asc, 10, offset, true,
    ));
    let mut c = s.read_conn().unwrap();
    let rows: Vec<(i64, i64, i64, String)> = q.load(&mut *c).unwrap();
    // Every line below the part's own: a parent comes before its children in the listing.
    let under = |part: &str| {
        let top = rows.iter().find(|r| r.3.ends_with(part))?;
        let mut ids = vec![top.0];
        let mut lines = Vec::new();
        for r in &rows {
            if ids.contains(&r.1) {
                ids.push(r.0);
                lines.push(r.3.clone());
            }
        }
        Some(lines)
    };
    SortedPlan {
        present: under(" present"),
        absent: under(" absent"),
        all: rows.iter().map(|r| r.3.clone()).collect(),
    }
}

/// Each sortable column's pages walk an index in the sort order, first pages, cursor
/// continuations (after a row with a value and after one without) and offsets alike, in both
/// directions. The present values' walk reads the index alone (covering) and sorts nothing:
/// `userName` on its unique index (no ties to order by id), the other columns on indexes that
/// end in id, so the rows a deep page steps over never reach the table. The absent values are
/// looked up in the same index (userName's, which holds no id, then sorted: Users have none),
/// never found by walking every User in id order. Only the page's own rows are joined back, by
/// rowid.
#[test]
fn store_sqlite_plans_sorted_pages_on_an_index() {
    let db = sqlite_db();
    seed(&db.store);
    let zero = "00000000-0000-0000-0000-000000000000";
    for (col, index) in [
        ("user_name_folded", "resources_user_name_uq"),
        ("display_name_folded", "resources_display_name_idx"),
        ("external_id", "resources_external_id_idx"),
        ("created", "resources_created_idx"),
        ("last_modified", "resources_last_modified_idx"),
    ] {
        for asc in [true, false] {
            for (after, offset) in [
                (None, 0),
                (None, 5),
                (Some((Some("bulk05"), zero)), 0),
                (Some((None, zero)), 0),
            ] {
                let plan = sqlite_sorted_page_plan(&db.store, col, after, asc, offset);
                let shown = plan.all.join(" | ");
                let case = format!("{col} asc={asc} after={after:?} offset={offset}");
                assert!(
                    plan.present.is_some() || plan.absent.is_some(),
                    "{case}: no part: {shown}"
                );
                if let Some(present) = &plan.present {
                    assert!(
                        present
                            .iter()
                            .any(|l| l.contains(&format!("COVERING INDEX {index} ("))),
                        "{case}: present values not on {index} alone: {shown}"
                    );
                    assert!(
                        !present.iter().any(|l| l.starts_with("USE TEMP B-TREE")),
                        "{case}: present values sorted: {shown}"
                    );
                }
                // `created` and `last_modified` are NOT NULL: SQLite knows their absent part
                // is empty without reading anything.
                let nullable = !matches!(col, "created" | "last_modified");
                if let Some(absent) = plan.absent.as_ref().filter(|_| nullable) {
                    assert!(
                        absent
                            .iter()
                            .any(|l| l
                                .contains(&format!("INDEX {index} (resource_type=? AND {col}=?"))),
                        "{case}: absent values not looked up in {index}: {shown}"
                    );
                }
                assert!(
                    plan.all
                        .iter()
                        .any(|l| l.starts_with("SEARCH r USING INTEGER PRIMARY KEY")),
                    "{case}: the page's rows not joined back by rowid: {shown}"
                );
            }
        }
    }
}

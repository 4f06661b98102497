//! PostgreSQL's checked id ranks (`store::pg_ranks`): deep index pages seek, and stay exact while
//! other nodes (a second store on the same database) create, delete and fold.

use diesel::RunQueryDsl;

use super::*;

/// Every id in list order, and the page at `start_index` as the node `s` answers it.
fn ids_of(page: &Page<LoadedResource>) -> Vec<String> {
    page.resources.iter().map(|r| r.id.clone()).collect()
}

fn page(s: &Store, start_index: u64, count: u64, descending: bool) -> Page<LoadedResource> {
    s.search_loaded(
        ResourceKind::User,
        &SearchQuery {
            start_index,
            count,
            descending,
            ..Default::default()
        },
        &user_schema(),
    )
    .unwrap()
}

fn counts(s: &Store) -> [u64; 3] {
    s.pg_deep_page_counts()
        .expect("PostgreSQL keeps deep-page counts")
        .map(|(_, n)| n)
}

/// The node's deep pages agree with a whole listing read through the other node (which never
/// seeks: its first page starts at the first row), in both orders.
fn agrees(node: &Store, truth_from: &Store, start_index: u64, count: u64) {
    for descending in [false, true] {
        let all = ids_of(&page(truth_from, 1, 10_000, descending));
        let got = page(node, start_index, count, descending);
        let want: Vec<String> = all
            .iter()
            .skip(start_index as usize - 1)
            .take(count as usize)
            .cloned()
            .collect();
        assert_eq!(
            ids_of(&got),
            want,
            "startIndex {start_index} desc {descending}"
        );
        assert_eq!(got.total_results, all.len() as u64);
    }
}

/// Another store on `db`'s database: a second node.
fn second_node(db: &TestDb) -> Store {
    Store::open(&db.postgres_url()).unwrap()
}

/// `(seek, caught_up, walk)` deep pages of `s` since `before`.
fn since(s: &Store, before: [u64; 3]) -> [u64; 3] {
    let now = counts(s);
    [0, 1, 2].map(|i| now[i] - before[i])
}

/// Runs `sql` on `s`'s writer connection.
fn sql(s: &Store, sql: &str) {
    s.inner.write.get().unwrap().batch_execute(sql).unwrap();
}

/// A user row written by a tool, not by scimhub, with an id of the form scimhub assigns.
fn tool_insert(s: &Store, id: &str, name: &str) {
    sql(
        s,
        &format!(
            "INSERT INTO resources (id, resource_type, doc, user_name_folded, created, \
             last_modified, version) VALUES ('{id}', 'User', '{{\"userName\":\"{name}\"}}', \
             '{name}', '2026-01-01T00:00:00.000000Z', '2026-01-01T00:00:00.000000Z', 1)"
        ),
    );
}

#[test]
fn pg_deep_pages_seek_and_follow_other_nodes() {
    let Some(db) = postgres_db() else {
        eprintln!("SCIMHUB_TEST_POSTGRES_URL not set: PostgreSQL's deep pages were not tested");
        return;
    };
    let other = second_node(&db);
    let a = &db.store;
    let mut ids: Vec<String> = (0..130)
        .map(|i| user(a, &format!("rank{i:03}")).id)
        .collect();
    ids.sort();

    // Shallow pages walk without reading the ranks; the first deep page reads them, and both
    // orders seek.
    let c = counts(a);
    agrees(a, &other, 5, 5);
    assert_eq!(since(a, c), [0, 0, 0], "shallow pages step over their rows");
    agrees(a, &other, 111, 5);
    assert_eq!(since(a, c), [2, 0, 0], "seek, caught_up, walk");

    // Another node deletes two users before the page and creates three: the ranks' marker no
    // longer holds, the page's own check says so, and the ranks catch up from the deltas.
    other.delete(ResourceKind::User, &ids[2], None).unwrap();
    other.delete(ResourceKind::User, &ids[5], None).unwrap();
    for i in 0..3 {
        other
            .create(
                ResourceKind::User,
                obj(json!({"userName": format!("theirs{i}")})),
                None,
            )
            .unwrap();
    }
    // Pages at 111 in both orders, on `a`: how they started, and how many reads of every id.
    let reads = || a.pg_ranks().unwrap().full_reads();
    let step = |paths: [u64; 3], full_reads: u64, why: &str| {
        let (c, r) = (counts(a), reads());
        agrees(a, &other, 111, 5);
        assert_eq!(since(a, c), paths, "{why}: seek, caught_up, walk");
        assert_eq!(reads() - r, full_reads, "{why}: reads of every id");
    };
    step(
        [1, 1, 0],
        0,
        "caught up from the deltas, then the marker holds",
    );

    // This node's own writes move the marker like anyone's.
    user(a, "mine");
    a.delete(ResourceKind::User, &ids[20], None).unwrap();
    let c = counts(a);
    agrees(a, &other, 102, 7);
    assert_eq!(since(a, c), [1, 1, 0]);

    // A fold (another node counting) removes the deltas the ranks counted: every id again.
    let fold = || {
        crate::store::search::fold_type_count(
            &mut other.inner.write.get().unwrap(),
            ResourceKind::User,
        )
        .unwrap()
    };
    fold();
    other.delete(ResourceKind::User, &ids[0], None).unwrap();
    step([1, 1, 0], 1, "after a fold");

    // A create and a fold leave as many deltas as before (none): the stamp tells them apart.
    fold();
    step([1, 1, 0], 1, "after a fold alone");
    user(&other, "between-folds");
    fold();
    step([1, 1, 0], 1, "a create and a fold");

    // Deltas that name no resource (appended before the column existed) cannot be replayed:
    // the ranks are read again rather than trusted. A fold then clears them.
    user(&other, "beside-nameless");
    sql(
        &other,
        "INSERT INTO resource_type_count_deltas (resource_type, delta) \
         VALUES ('User', 1), ('User', -1)",
    );
    step([1, 1, 0], 1, "nameless deltas");
    fold();
    step([1, 1, 0], 1, "the fold after them");

    // A tool deletes a user and writes it back under the same id, and moves another to a new
    // id: the deltas' order does not matter, the table says what holds now.
    let reused = ids[40].clone();
    other.delete(ResourceKind::User, &reused, None).unwrap();
    tool_insert(&other, &reused, "reused");
    let (from, to) = (
        uuid::Uuid::now_v7().to_string(),
        uuid::Uuid::now_v7().to_string(),
    );
    tool_insert(&other, &from, "moved");
    sql(
        &other,
        &format!("UPDATE resources SET id = '{to}' WHERE id = '{from}'"),
    );
    step([1, 1, 0], 0, "a reused id and a moved one, from the deltas");

    // Past the end of stale ranks: the marker is checked, the ranks catch up, and the rows
    // the other node created since are found.
    let total = ids_of(&page(&other, 1, 10_000, false)).len() as u64;
    for i in 0..2 {
        user(&other, &format!("late{i}"));
    }
    let (c, r) = (counts(a), reads());
    agrees(a, &other, total + 1, 5);
    assert_eq!(since(a, c), [1, 1, 0]);
    assert_eq!(reads(), r, "caught up from the deltas");
    // Past the end of current ranks: empty, without a walk.
    let c = counts(a);
    let past = page(a, 500, 5, false);
    assert!(past.resources.is_empty());
    assert_eq!(past.total_results, total + 2);
    assert_eq!(since(a, c), [1, 0, 0]);

    // Deltas piling up past the fold threshold (deep pages take their totals from the ranks,
    // so they never count): the catch-up folds them, then reads every id.
    sql(
        &other,
        "INSERT INTO resource_type_count_deltas (resource_type, delta, resource_id) \
         SELECT 'User', v.d, '01000000-0000-7000-8000-' || lpad(i::text, 12, '0') \
         FROM generate_series(1, 300) AS i, (VALUES (1), (-1)) AS v (d)",
    );
    step([1, 1, 0], 1, "past the fold threshold");
    let unfolded = crate::store::sql::Sql::<diesel::sql_types::BigInt>::new(
        "SELECT COUNT(*) FROM resource_type_count_deltas WHERE resource_type = 'User'",
    )
    .get_result::<i64>(&mut other.inner.write.get().unwrap())
    .unwrap();
    assert_eq!(unfolded, 0);

    // The other node, which never paged deep, holds no ranks; its first deep page seeks.
    let c = counts(&other);
    agrees(&other, a, 103, 4);
    assert_eq!(since(&other, c), [2, 0, 0]);
}

/// Many threads paging deep while another node writes: every page is the one its own total
/// implies, and none waits for another forever (a catch-up that held the ranks' state while
/// reading them again did).
#[test]
fn pg_deep_pages_stay_exact_under_concurrent_writes() {
    let Some(db) = postgres_db_with(8) else {
        return;
    };
    let other = second_node(&db);
    let a = db.store.clone();
    let mut stable: Vec<String> = (0..150)
        .map(|i| user(&a, &format!("conc{i:03}")).id)
        .collect();
    stable.sort();
    stable.reverse();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Creates users (ids later than every stable one: UUIDv7) and deletes every other one
    // again, so at most 91 of them live at once; now and then it folds.
    let writer = {
        let (other, stop) = (other.clone(), stop.clone());
        std::thread::spawn(move || {
            for i in 0..180 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let u = user(&other, &format!("churn{i:03}"));
                if i % 2 == 1 {
                    other.delete(ResourceKind::User, &u.id, None).unwrap();
                }
                if i % 60 == 59 {
                    crate::store::search::fold_type_count(
                        &mut other.inner.write.get().unwrap(),
                        ResourceKind::User,
                    )
                    .unwrap();
                }
            }
        })
    };
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (a, stable) = (a.clone(), stable.clone());
            std::thread::spawn(move || {
                let mut checked = 0;
                for _ in 0..25 {
                    // Newest first: the live churn users come first, then the stable ones.
                    let walks = counts(&a)[2];
                    let got = page(&a, 101, 20, true);
                    let live = got.total_results as usize - stable.len();
                    assert!(live <= 91, "total {}", got.total_results);
                    // A walked page takes its total from a statement of its own (another
                    // snapshot): only pages during which no page walked are held to it.
                    if counts(&a)[2] == walks {
                        let want = &stable[100 - live..120 - live];
                        assert_eq!(ids_of(&got), want, "a page and its total, one snapshot");
                        checked += 1;
                    }
                }
                checked
            })
        })
        .collect();
    let checked: usize = readers
        .into_iter()
        .map(|r| r.join().expect("a reader"))
        .sum();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().expect("the writer");
    eprintln!("{checked} of 100 pages checked; paths {:?}", counts(&a));
    assert!(checked >= 10, "{checked} pages checked: {:?}", counts(&a));
    assert!(counts(&a)[1] > 0, "some pages caught up: {:?}", counts(&a));
    agrees(&a, &other, 101, 20);
}

/// An id the store did not assign (a bulk load's) makes the ranks unusable: deep pages walk and
/// stay exact.
#[test]
fn pg_deep_pages_walk_when_an_id_is_foreign() {
    let Some(db) = postgres_db() else {
        return;
    };
    let a = &db.store;
    for i in 0..110 {
        user(a, &format!("native{i:03}"));
    }
    {
        let mut c = a.inner.write.get().unwrap();
        c.batch_execute(
            "INSERT INTO resources (id, resource_type, doc, user_name_folded, created, \
             last_modified, version) VALUES ('bulk-1', 'User', '{\"userName\":\"bulk-1\"}', \
             'bulk-1', '2026-01-01T00:00:00.000000Z', '2026-01-01T00:00:00.000000Z', 1)",
        )
        .unwrap();
    }
    agrees(a, a, 103, 2);
    assert_eq!(counts(a), [0, 0, 2], "walks in both orders");
}

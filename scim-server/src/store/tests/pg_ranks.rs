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

#[test]
fn pg_deep_pages_seek_and_follow_other_nodes() {
    let Some(db) = postgres_db() else {
        return;
    };
    let Cleanup::Postgres {
        admin_url,
        db: name,
    } = &db.cleanup
    else {
        panic!("a PostgreSQL test database");
    };
    let (prefix, _) = admin_url.rsplit_once('/').unwrap();
    let other = Store::open(&format!("{prefix}/{name}")).unwrap();
    let a = &db.store;
    let mut ids: Vec<String> = (0..30)
        .map(|i| user(a, &format!("rank{i:02}")).id)
        .collect();
    ids.sort();

    // The first deep page reads the ranks; both orders seek.
    agrees(a, &other, 11, 5);
    assert_eq!(counts(a), [2, 0, 0], "seek, caught_up, walk");

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
    agrees(a, &other, 11, 5);
    assert_eq!(
        counts(a),
        [3, 1, 0],
        "caught up once, then the marker holds"
    );

    // This node's own writes move the marker like anyone's.
    user(a, "mine");
    a.delete(ResourceKind::User, &ids[20], None).unwrap();
    agrees(a, &other, 2, 7);
    assert_eq!(counts(a), [4, 2, 0]);

    // A fold (another node counting) removes the deltas the ranks counted: read every id again.
    {
        let mut c = other.inner.write.get().unwrap();
        crate::store::search::fold_type_count(&mut c, ResourceKind::User).unwrap();
    }
    other.delete(ResourceKind::User, &ids[0], None).unwrap();
    agrees(a, &other, 11, 5);
    assert_eq!(counts(a), [5, 3, 0]);

    // Deltas that name no resource (appended before the column existed) cannot be replayed:
    // the ranks are read again rather than trusted.
    {
        let mut c = other.inner.write.get().unwrap();
        c.batch_execute(
            "INSERT INTO resource_type_count_deltas (resource_type, delta) \
             VALUES ('User', 1), ('User', -1)",
        )
        .unwrap();
    }
    agrees(a, &other, 11, 5);
    assert_eq!(counts(a), [6, 4, 0]);

    // Deltas piling up past the fold threshold (nothing else folds while deep pages take their
    // totals from the ranks): the catch-up folds them, then reads every id.
    {
        let mut c = other.inner.write.get().unwrap();
        c.batch_execute(
            "INSERT INTO resource_type_count_deltas (resource_type, delta, resource_id) \
             SELECT 'User', v.d, '01000000-0000-7000-8000-' || lpad(i::text, 12, '0') \
             FROM generate_series(1, 300) AS i, (VALUES (1), (-1)) AS v (d)",
        )
        .unwrap();
    }
    agrees(a, &other, 11, 5);
    assert_eq!(counts(a), [7, 5, 0]);
    let unfolded = crate::store::sql::Sql::<diesel::sql_types::BigInt>::new(
        "SELECT COUNT(*) FROM resource_type_count_deltas WHERE resource_type = 'User'",
    )
    .get_result::<i64>(&mut other.inner.write.get().unwrap())
    .unwrap();
    assert_eq!(unfolded, 0);

    // Past the end there is no row for a check to find: the page walks, and is empty.
    let past = page(a, 500, 5, false);
    assert!(past.resources.is_empty());
    assert_eq!(
        past.total_results,
        ids_of(&page(&other, 1, 10_000, false)).len() as u64
    );
    assert_eq!(counts(a)[2], 1, "a walk");
    // The other node, which never paged deep, holds no ranks; its first deep page seeks.
    agrees(&other, a, 3, 4);
    assert_eq!(counts(&other), [2, 0, 0]);
}

/// An id the store did not assign (a bulk load's) makes the ranks unusable: deep pages walk and
/// stay exact.
#[test]
fn pg_deep_pages_walk_when_an_id_is_foreign() {
    let Some(db) = postgres_db() else {
        return;
    };
    let a = &db.store;
    for i in 0..6 {
        user(a, &format!("native{i}"));
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
    agrees(a, a, 3, 2);
    assert_eq!(counts(a), [0, 0, 2], "walks in both orders");
}

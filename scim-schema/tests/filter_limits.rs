//! The largest inputs the limits allow must not exhaust a worker thread's stack anywhere:
//! parsing, printing, evaluating, folding or dropping.
#![allow(clippy::unwrap_used)]

use scim_schema::filter::{
    fold, matches, parse_filter, AttrPath, CompValue, CompareOp, FilterFold, MAX_DEPTH,
    MAX_INPUT_LEN,
};

struct Count;
impl FilterFold for Count {
    type Output = usize;
    fn compare(
        &mut self,
        _: Option<&AttrPath>,
        _: &AttrPath,
        _: CompareOp,
        _: &CompValue,
    ) -> usize {
        1
    }
    fn present(&mut self, _: Option<&AttrPath>, _: &AttrPath) -> usize {
        1
    }
    fn and(&mut self, a: usize, b: usize) -> usize {
        a + b
    }
    fn or(&mut self, a: usize, b: usize) -> usize {
        a + b
    }
    fn not(&mut self, a: usize) -> usize {
        a
    }
    fn value_path(&mut self, _: &AttrPath, a: usize) -> usize {
        a
    }
}

/// Runs `f` on a thread with a 1 MiB stack (half of Rust's default for spawned threads).
fn on_small_stack(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .stack_size(1 << 20)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn longest_or_chain_within_the_length_limit() {
    on_small_stack(|| {
        let n = MAX_INPUT_LEN / "a pr or ".len();
        let text = vec!["a pr"; n].join(" or ");
        assert!(text.len() <= MAX_INPUT_LEN);
        let f = parse_filter(&text).unwrap();
        assert_eq!(fold(&mut Count, &f), n);
        let resource = serde_json::Map::new();
        assert!(!matches(&f, &resource, None));
        assert_eq!(f.to_string(), text);
        drop(f);
    });
}

#[test]
fn deepest_nesting_within_the_depth_limit() {
    on_small_stack(|| {
        let text = format!(
            "{}a[b pr]{}",
            "not (".repeat(MAX_DEPTH - 1),
            ")".repeat(MAX_DEPTH - 1)
        );
        let f = parse_filter(&text).unwrap();
        assert_eq!(fold(&mut Count, &f), 1);
        assert_eq!(parse_filter(&f.to_string()).unwrap(), f);
        let too_deep = format!(
            "{}a[b pr]{}",
            "not (".repeat(MAX_DEPTH),
            ")".repeat(MAX_DEPTH)
        );
        assert!(parse_filter(&too_deep).is_err());
        assert!(parse_filter(&"(".repeat(MAX_INPUT_LEN)).is_err());
        assert!(parse_filter(&"a[".repeat(MAX_INPUT_LEN / 2)).is_err());
    });
}

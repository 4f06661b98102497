//! Property tests of the filter grammar: print → parse round trips, and no input panics the
//! parser or the evaluator.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use serde_json::{Map, Number, Value};

use scim_schema::filter::{
    matches, matches_value, parse_attr_path, parse_filter, parse_patch_path, AttrPath, CompValue,
    CompareOp, Filter, PatchPath,
};
use scim_schema::CiString;

const URNS: &[&str] = &[
    "urn:ietf:params:scim:schemas:core:2.0:User",
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
    "URN:example:custom-1:v2",
];

fn name() -> impl Strategy<Value = CiString> {
    prop_oneof![
        8 => "[a-zA-Z][a-zA-Z0-9_-]{0,8}",
        1 => Just("$ref".to_owned()),
        1 => prop::sample::select(vec!["not", "and", "or", "pr", "eq", "true", "null", "value", "type"]).prop_map(str::to_owned),
    ]
    .prop_map(CiString::from)
}

fn attr_path(allow_sub: bool) -> impl Strategy<Value = AttrPath> {
    let urn = prop::option::weighted(0.2, prop::sample::select(URNS).prop_map(CiString::from));
    let sub = prop::option::weighted(0.3, name());
    (urn, name(), sub).prop_map(move |(urn, name, sub_attr)| AttrPath {
        urn,
        name,
        sub_attr: sub_attr.filter(|_| allow_sub),
    })
}

fn number() -> impl Strategy<Value = Number> {
    prop_oneof![
        any::<i64>().prop_map(Number::from),
        any::<u64>().prop_map(Number::from),
        any::<f64>().prop_filter_map("finite", Number::from_f64),
        (-1000i32..1000, 0u32..6).prop_filter_map("finite", |(m, e)| Number::from_f64(
            f64::from(m) / 10f64.powi(e as i32)
        )),
    ]
}

fn comp_value() -> impl Strategy<Value = CompValue> {
    prop_oneof![
        Just(CompValue::Null),
        any::<bool>().prop_map(CompValue::Bool),
        number().prop_map(CompValue::Number),
        any::<String>().prop_map(CompValue::Str),
        "[a-z@. \"\\\\/]{0,6}".prop_map(CompValue::Str),
    ]
}

fn compare_op() -> impl Strategy<Value = CompareOp> {
    prop::sample::select(vec![
        CompareOp::Eq,
        CompareOp::Ne,
        CompareOp::Co,
        CompareOp::Sw,
        CompareOp::Ew,
        CompareOp::Gt,
        CompareOp::Lt,
        CompareOp::Ge,
        CompareOp::Le,
    ])
}

fn leaf() -> impl Strategy<Value = Filter> {
    prop_oneof![
        3 => (attr_path(true), compare_op(), comp_value()).prop_map(|(path, op, value)| Filter::Compare { path, op, value }),
        1 => attr_path(true).prop_map(Filter::Present),
    ]
}

/// Filters without value paths (what may appear inside brackets, errata 4690).
fn val_filter() -> impl Strategy<Value = Filter> {
    leaf().prop_recursive(4, 16, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Filter::And(Box::new(a), Box::new(b))),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Filter::Or(Box::new(a), Box::new(b))),
            inner.prop_map(|a| Filter::Not(Box::new(a))),
        ]
    })
}

fn filter() -> impl Strategy<Value = Filter> {
    let base = prop_oneof![
        3 => leaf(),
        1 => (attr_path(false), val_filter()).prop_map(|(path, f)| Filter::ValuePath { path, filter: Box::new(f) }),
    ];
    base.prop_recursive(6, 48, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Filter::And(Box::new(a), Box::new(b))),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Filter::Or(Box::new(a), Box::new(b))),
            inner.prop_map(|a| Filter::Not(Box::new(a))),
        ]
    })
}

fn patch_path() -> impl Strategy<Value = PatchPath> {
    prop_oneof![
        attr_path(true).prop_map(|attr| PatchPath {
            attr,
            value_filter: None,
            sub_attr: None
        }),
        (attr_path(false), val_filter(), prop::option::of(name())).prop_map(
            |(attr, f, sub_attr)| PatchPath {
                attr,
                value_filter: Some(f),
                sub_attr
            }
        ),
    ]
}

/// Random filter-ish text: mostly grammar tokens, so the parser gets deep before failing.
fn token_soup() -> impl Strategy<Value = String> {
    let token = prop::sample::select(vec![
        "userName",
        "emails",
        "name.givenName",
        "urn:ietf:params:scim:schemas:core:2.0:User:userName",
        "[",
        "]",
        "(",
        ")",
        "not",
        "not(",
        "and",
        "or",
        "AND",
        "eq",
        "Ne",
        "co",
        "sw",
        "ew",
        "gt",
        "lt",
        "ge",
        "le",
        "pr",
        "\"x\"",
        "\"",
        "\\",
        "\\u",
        "\"\\ud83d\"",
        "12",
        "-1.5e3",
        "01",
        "true",
        "NULL",
        " ",
        "  ",
        ".",
        ":",
        "$ref",
        "é",
    ]);
    prop::collection::vec(token, 0..24).prop_map(|t| t.join(" "))
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number().prop_map(Value::Number),
        "[a-zA-Z@.0-9:-]{0,8}".prop_map(Value::String),
        Just(Value::String("2024-01-01T00:00:00Z".into())),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop::sample::select(vec![
                        "value", "type", "userName", "a", "B", "$ref", URNS[1]
                    ]),
                    inner
                ),
                0..4
            )
            .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
        ]
    })
}

fn resource() -> impl Strategy<Value = Map<String, Value>> {
    let key = prop_oneof![
        prop::sample::select(vec![
            "userName", "emails", "name", "value", "type", "$ref", "not", URNS[0], URNS[1], URNS[2]
        ])
        .prop_map(str::to_owned),
        "[a-zA-Z]{1,3}",
    ];
    prop::collection::vec((key, json_value()), 0..6).prop_map(|kv| kv.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn print_then_parse_is_identity(f in filter()) {
        let printed = f.to_string();
        let parsed = parse_filter(&printed);
        prop_assert_eq!(parsed.as_ref().ok(), Some(&f), "printed: {} error: {:?}", printed, parsed.as_ref().err());
    }

    #[test]
    fn patch_path_print_then_parse_is_identity(p in patch_path()) {
        let printed = p.to_string();
        prop_assert_eq!(parse_patch_path(&printed).ok(), Some(p), "printed: {}", printed);
    }

    #[test]
    fn attr_path_print_then_parse_is_identity(p in attr_path(true)) {
        prop_assert_eq!(parse_attr_path(&p.to_string()).ok(), Some(p));
    }

    #[test]
    fn arbitrary_strings_never_panic(s in any::<String>()) {
        let _ = parse_filter(&s);
        let _ = parse_patch_path(&s);
        let _ = parse_attr_path(&s);
    }

    #[test]
    fn token_soup_never_panics_and_reparses(s in token_soup()) {
        if let Ok(f) = parse_filter(&s) {
            prop_assert_eq!(parse_filter(&f.to_string()).ok(), Some(f));
        }
        if let Ok(p) = parse_patch_path(&s) {
            prop_assert_eq!(parse_patch_path(&p.to_string()).ok(), Some(p));
        }
    }

    #[test]
    fn eval_never_panics_and_not_negates(f in filter(), r in resource(), element in json_value()) {
        let direct = matches(&f, &r, None);
        let negated = Filter::Not(Box::new(f.clone()));
        prop_assert_eq!(matches(&negated, &r, None), !direct);
        let _ = matches_value(&f, &element, None);
    }

    #[test]
    fn ne_is_not_eq(path in attr_path(true), value in comp_value(), r in resource()) {
        let ne = Filter::Compare { path: path.clone(), op: CompareOp::Ne, value: value.clone() };
        let eq = Filter::Compare { path, op: CompareOp::Eq, value };
        prop_assert_eq!(matches(&ne, &r, None), !matches(&eq, &r, None));
    }
}

use super::*;

#[test]
fn sanitize_replaces_bare_tokens_only() {
    let s =
        sanitize_non_finite(r#"{"a": NaN, "b": -Infinity, "c": [Infinity], "t": "NaN Infinity"}"#)
            .unwrap();
    assert_eq!(
        s,
        r#"{"a": "\u0000fintune-non-finite:NaN", "b": "\u0000fintune-non-finite:-Infinity", "c": ["\u0000fintune-non-finite:Infinity"], "t": "NaN Infinity"}"#
    );
    assert_eq!(sanitize_non_finite(r#"{"t": "say \"NaN\""}"#), None);
    assert_eq!(sanitize_non_finite(r#"{"a": NaNa}"#), None);
    assert_eq!(sanitize_non_finite(r#"{"a": 1}"#), None);
}

#[test]
fn classify_values() {
    let raw = |s: &str| serde_json::from_str::<Box<RawValue>>(s).unwrap();
    assert!(matches!(classify(&raw("null")), Json::Null));
    assert!(matches!(classify(&raw("\"a\\nb\"")), Json::Str(s) if s == "a\nb"));
    assert!(matches!(classify(&raw("\"ab\"")), Json::Str(Cow::Borrowed("ab"))));
    assert!(matches!(classify(&raw("-1.5e3")), Json::Num("-1.5e3")));
    assert!(matches!(classify(&raw("[1]")), Json::Array));
    assert!(matches!(classify(&raw("{}")), Json::Object));
    assert!(matches!(classify(&raw("false")), Json::Bool(false)));
    let marked = raw("\"\\u0000fintune-non-finite:NaN\"");
    assert!(matches!(classify(&marked), Json::NonFinite(t) if t == "NaN"));
}

#[test]
fn non_finite_token_in_a_text_column_is_a_wrong_type() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.jsonl");
    std::fs::write(&path, "{\"text\": NaN, \"score\": 0}\n").unwrap();
    let err = crate::read_dataset(&[&path], &crate::ReadOptions::new()).unwrap_err();
    assert!(
        err.to_string().contains("t.jsonl:1: column \"text\": expected a string, found NaN"),
        "{err}"
    );
}

#[test]
fn malformed_messages_drop_serde_positions() {
    let err = parse_fields("{\"a\": }", &["id", "text", "score", "target", "source", "group"])
        .unwrap_err();
    assert_eq!(json_message(&err), "malformed JSON (column 7): expected value");
    let err =
        parse_fields("[1]", &["id", "text", "score", "target", "source", "group"]).unwrap_err();
    assert_eq!(json_message(&err), "malformed JSON: invalid type: array, expected a JSON object");
}

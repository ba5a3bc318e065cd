use super::*;

#[test]
fn names_round_trip_through_from_str() {
    for format in Format::ALL {
        assert_eq!(format.name().parse::<Format>().unwrap(), format);
        assert_eq!(format.to_string(), format.name());
        let file = format!("x.{}", format.extension());
        assert_eq!(Format::from_path(&file), Some(format), "{file}");
    }
    assert_eq!(Format::NAMES.len(), Format::ALL.len());
}

#[test]
fn unknown_names_and_extensions() {
    let err = "xml".parse::<Format>().unwrap_err();
    assert!(err.to_string().contains("\"xml\""), "{err}");
    assert!(err.to_string().contains("parquet"), "{err}");
    assert_eq!(Format::from_path("data.txt"), None);
    assert_eq!(Format::from_path("data"), None);
    assert_eq!(Format::from_path("DATA.JSONL"), Some(Format::Jsonl));
    assert_eq!("Parquet".parse::<Format>().unwrap(), Format::Parquet);
}

#[test]
fn detect_sniffs_json_lines_and_arrow_streams() {
    let dir = tempfile::tempdir().unwrap();
    let lines = dir.path().join("a.json");
    std::fs::write(&lines, "\u{feff}  {\"text\": \"x\"}\n").unwrap();
    assert_eq!(Format::detect(&lines).unwrap(), Format::Jsonl);
    let array = dir.path().join("b.json");
    std::fs::write(&array, "\n[{\"text\": \"x\"}]").unwrap();
    assert_eq!(Format::detect(&array).unwrap(), Format::JsonArray);
    let stream = dir.path().join("c.arrow");
    std::fs::write(&stream, b"\xff\xff\xff\xff").unwrap();
    assert_eq!(Format::detect(&stream).unwrap(), Format::ArrowStream);
    let file = dir.path().join("d.arrow");
    std::fs::write(&file, b"ARROW1\0\0").unwrap();
    assert_eq!(Format::detect(&file).unwrap(), Format::ArrowFile);
    assert!(matches!(Format::detect(dir.path().join("e.txt")), Err(Error::UnknownFormat { .. })));
    assert!(matches!(Format::detect(dir.path().join("missing.json")), Err(Error::Io { .. })));
}

#[test]
fn serde_uses_the_same_name_table_as_from_str_and_display() {
    #[derive(serde::Serialize, serde::Deserialize)]
    struct Holder {
        format: Format,
    }
    for f in Format::ALL {
        let json = serde_json::to_string(&Holder { format: f }).unwrap();
        assert_eq!(json, format!("{{\"format\":\"{}\"}}", f.name()));
        let back: Holder = serde_json::from_str(&json).unwrap();
        assert_eq!(back.format, f);
    }
    // Aliases accepted by `--format` are accepted in files too (issue 15: `format = "json"`).
    let h: Holder = serde_json::from_str(r#"{"format":"json"}"#).unwrap();
    assert_eq!(h.format, Format::JsonArray);
    let h: Holder = serde_json::from_str(r#"{"format":"json-array"}"#).unwrap();
    assert_eq!(h.format, Format::JsonArray);
    let err = serde_json::from_str::<Holder>(r#"{"format":"xml"}"#).err().unwrap().to_string();
    assert!(err.contains("xml"), "{err}");
}

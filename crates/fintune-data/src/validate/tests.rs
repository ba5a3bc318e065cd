use super::*;

fn at(line: u64) -> FirstUse {
    FirstUse { file: 0, loc: Location::Line(line) }
}

#[test]
fn id_set_tells_apart_ids_with_the_same_hash() {
    let mut ids = IdSet::default();
    assert!(ids.insert_hashed(7, "a", at(1)).is_none());
    assert!(ids.insert_hashed(7, "b", at(2)).is_none());
    assert!(ids.insert_hashed(7, "c", at(3)).is_none());
    assert_eq!(ids.insert_hashed(7, "a", at(4)).map(|f| f.loc), Some(Location::Line(1)));
    assert_eq!(ids.insert_hashed(7, "c", at(5)).map(|f| f.loc), Some(Location::Line(3)));
    assert!(ids.insert_hashed(8, "a", at(6)).is_none(), "another hash is another id");
}

#[test]
fn id_set_with_real_hashes() {
    let mut ids = IdSet::default();
    for i in 0..10_000 {
        assert!(ids.insert(&format!("id-{i}"), at(i)).is_none());
    }
    for i in (0..10_000).step_by(997) {
        assert_eq!(ids.insert(&format!("id-{i}"), at(0)).map(|f| f.loc), Some(Location::Line(i)));
    }
    assert!(ids.insert("", at(1)).is_none());
    assert!(ids.insert("", at(2)).is_some());
}

use super::*;

#[test]
fn equal_is_all_ones() {
    let mut e = Equal::new(3).unwrap();
    let w = e.weights(&StepObservation::new(&[0.1, 2.0, 30.0])).unwrap();
    assert_eq!(w.values, vec![1.0; 3]);
    assert!(w.terms.is_empty());
}

#[test]
fn static_is_normalised_to_the_task_count() {
    let mut s = Static::new(&[0.7, 0.3]).unwrap();
    assert_eq!(s.name(), "static:0.7,0.3");
    let w = s.weights(&StepObservation::new(&[1.0, 1.0])).unwrap();
    assert!(
        (w.values[0] - 1.4).abs() < 1e-15 && (w.values[1] - 0.6).abs() < 1e-15,
        "{:?}",
        w.values
    );
    let mut s = Static::new(&[7.0, 3.0]).unwrap();
    assert_eq!(s.weights(&StepObservation::new(&[1.0, 1.0])).unwrap().values, w.values);
    assert!(Static::new(&[1.0, 0.0]).is_err());
    assert!(Static::new(&[]).is_err());
}

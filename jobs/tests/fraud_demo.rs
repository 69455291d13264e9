//! The fraud demo as a new user runs it, unthrottled (`--rate 100000000`) on its embedded
//! broker, which keeps only the last 5 MB of each partition: with one user every payment
//! goes to one partition, and 120,000 payments (about 12 MB) are more than it keeps, so a
//! generator running ahead of the job would have its oldest payments deleted unread. The
//! demo must read every payment, say what the job read (not what was generated), and raise
//! exactly the alerts of the rule applied directly to the same payments.

use std::process::Command;

#[test]
fn the_demo_reads_every_payment_at_any_rate_on_its_embedded_broker() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fraud-demo"))
        .args([
            "--count",
            "120000",
            "--users",
            "1",
            "--rate",
            "100000000",
            "-p",
            "1",
            "--print",
            "0",
        ])
        .arg("--work-dir")
        .arg(dir.path())
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}\n{stdout}");
    assert!(
        stdout
            .contains("the job read 120000 payments and 12 malformed records (dead letters) of 120012 records written"),
        "{stdout}"
    );
    assert!(!stdout.contains("were not read"), "{stdout}");
    assert!(
        stdout.contains("the alerts are exactly those of the rule applied directly"),
        "{stdout}"
    );
}

//! Hiding secrets in job arguments before they are shown: `floe status`, the REST job
//! detail and the web page show a job's arguments, and those may carry credentials, such
//! as librdkafka properties (`-X sasl.password=...`) or a job's own `--token`. The job
//! manager keeps the arguments as given (its store is private to its user) and hands them
//! to workers in their spec, never on a command line.

/// What stands in for a hidden value.
pub const REDACTED: &str = "<redacted>";

/// Words that mark a property or flag as secret, matched anywhere in its name, ignoring case.
const SECRET_WORDS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "credential",
    "jaas",
    "apikey",
    "api.key",
    "api_key",
    "api-key",
    "private",
    "ssl.key.pem",
];

/// Whether a property or flag called `name` holds a secret.
pub fn is_secret_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_WORDS.iter().any(|w| name.contains(w))
}

/// `args` with the values of secret properties and flags replaced by [`REDACTED`]:
/// `name=value` (a librdkafka property after `-X`, or a `--flag=value`) where the name is
/// secret, and the argument after a secret `--flag`.
///
/// ```
/// use floe_cluster::redact::redact_args;
/// let args: Vec<String> = ["--brokers", "b:9092", "-X", "sasl.password=hunter2", "--token", "t0k", "--api-key=k"]
///     .map(String::from)
///     .into();
/// assert_eq!(
///     redact_args(&args),
///     ["--brokers", "b:9092", "-X", "sasl.password=<redacted>", "--token", "<redacted>", "--api-key=<redacted>"]
/// );
/// ```
pub fn redact_args(args: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut hide_next = false;
    for arg in args {
        if std::mem::take(&mut hide_next) {
            out.push(REDACTED.to_string());
            continue;
        }
        if let Some((name, _)) = arg.split_once('=') {
            if is_secret_name(name) {
                out.push(format!("{name}={REDACTED}"));
                continue;
            }
        } else if arg.starts_with('-') && arg.len() > 2 && is_secret_name(arg) {
            hide_next = true;
        }
        out.push(arg.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn secrets_are_hidden_and_the_rest_is_kept() {
        let args = strings(&[
            "--brokers",
            "127.0.0.1:9092",
            "-X",
            "sasl.password=hunter2",
            "-X",
            "sasl.jaas.config=org.apache...required username=\"u\" password=\"p\";",
            "-X",
            "ssl.key.password=k",
            "-X",
            "ssl.key.location=/etc/key.pem",
            "-X",
            "fetch.wait.max.ms=10",
            "--SASL-PASSWORD",
            "x",
            "--client-secret=abc",
            "--parallelism",
            "2",
            "--token",
        ]);
        let shown = redact_args(&args).join(" ");
        for secret in ["hunter2", "username", "ssl.key.password=k", " x ", "abc"] {
            assert!(!shown.contains(secret), "{secret} shown in {shown}");
        }
        for kept in [
            "127.0.0.1:9092",
            "ssl.key.location=/etc/key.pem",
            "fetch.wait.max.ms=10",
            "--parallelism 2",
        ] {
            assert!(shown.contains(kept), "{kept} hidden in {shown}");
        }
        assert!(shown.ends_with("--token"), "a trailing flag stays: {shown}");
        assert_eq!(redact_args(&args).len(), args.len(), "one shown argument per argument");
    }
}

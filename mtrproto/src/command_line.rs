//! The helper's command line (`$MTR_PACKET`) split into words: a pure function on a string,
//! so every driver (blocking, tokio, the bench tools) starts the helper the same way.

use crate::error::CommandLineError;

/// Splits a command line into words like a POSIX shell would, without running one: quotes
/// and backslashes as `sh` reads them; refused when a quote is left open or no word is left,
/// or the first word is empty (`''`), so the first word, the program, always names one.
///
/// ```
/// let words = mtrproto::split_command("sudo -n '/opt/mtr tools/mtr-packet'")?;
/// assert_eq!(words, ["sudo", "-n", "/opt/mtr tools/mtr-packet"]);
/// # Ok::<(), mtrproto::CommandLineError>(())
/// ```
pub fn split_command(value: &str) -> Result<Vec<String>, CommandLineError> {
    let bad = |reason: String| CommandLineError {
        value: value.to_owned(),
        reason,
    };
    let words = shell_words::split(value).map_err(|e| bad(e.to_string()))?;
    if words.first().is_none_or(String::is_empty) {
        return Err(bad("it names no program".into()));
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::split_command;

    #[test]
    fn splits_like_a_shell_and_refuses_what_names_no_program() {
        let words = split_command(r#"sudo -n '/opt/mtr tools/mtr-packet' "--x=a b" c\ d"#).unwrap();
        assert_eq!(
            words,
            ["sudo", "-n", "/opt/mtr tools/mtr-packet", "--x=a b", "c d"]
        );
        assert!(split_command("   ").is_err());
        assert!(split_command("'unterminated").is_err());
        // An empty first word names no program either (it was taken, and starting it
        // failed with an empty name).
        assert!(split_command("'' -x").is_err());
        assert!(split_command("\"\"").is_err());
    }
}

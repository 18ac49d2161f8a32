//! Which hook stage this run is.
//!
//! A hooks.d 1.0.0 descriptor lists several stages for one hook path and
//! passes the same `args` to each, so the stage usually has to be inferred.
//! Order of precedence (as the original oci-systemd-hook and runc's
//! `runc spec --hooks` users expect):
//! 1. the environment variable `stage`;
//! 2. `argv[1]`;
//! 3. the state: a `pid` greater than zero means prestart, none means poststop.

/// A stage the hook acts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// `prestart` or `createRuntime` (runtime-spec `config.md#prestart`): the
    /// container's namespaces exist, pivot_root has not happened.
    Prestart,
    /// `poststop`: the container's processes are gone.
    Poststop,
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stage::Prestart => "prestart",
            Stage::Poststop => "poststop",
        })
    }
}

/// Result of looking at the explicit stage names and the state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StageChoice {
    /// A stage the hook handles.
    Known(Stage),
    /// An explicitly named stage the hook does not handle (logged, exit 0).
    Unknown(String),
}

/// Parses an explicit stage name; `None` for a name the hook does not handle.
pub fn parse_name(name: &str) -> Option<Stage> {
    match name {
        "prestart" | "createRuntime" => Some(Stage::Prestart),
        "poststop" => Some(Stage::Poststop),
        _ => None,
    }
}

/// Chooses the stage from env `stage`, `argv[1]` and the state's pid, in that
/// order. Empty strings count as absent.
pub fn choose(env_stage: Option<&str>, arg1: Option<&str>, pid: Option<i32>) -> StageChoice {
    let explicit = env_stage
        .filter(|s| !s.is_empty())
        .or(arg1.filter(|s| !s.is_empty()));
    match explicit {
        Some(name) => match parse_name(name) {
            Some(stage) => StageChoice::Known(stage),
            None => StageChoice::Unknown(name.to_string()),
        },
        None if pid.is_some_and(|p| p > 0) => StageChoice::Known(Stage::Prestart),
        None => StageChoice::Known(Stage::Poststop),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use StageChoice::*;

    #[test]
    fn env_wins_over_argv_and_state() {
        assert_eq!(
            choose(Some("poststop"), Some("prestart"), Some(4)),
            Known(Stage::Poststop)
        );
    }

    #[test]
    fn argv_wins_over_state() {
        assert_eq!(
            choose(None, Some("poststop"), Some(4)),
            Known(Stage::Poststop)
        );
        assert_eq!(
            choose(Some(""), Some("createRuntime"), None),
            Known(Stage::Prestart)
        );
    }

    #[test]
    fn state_decides_without_explicit_stage() {
        assert_eq!(choose(None, None, Some(12)), Known(Stage::Prestart));
        assert_eq!(choose(None, None, None), Known(Stage::Poststop));
        assert_eq!(choose(None, None, Some(0)), Known(Stage::Poststop));
        assert_eq!(choose(None, Some(""), Some(-1)), Known(Stage::Poststop));
    }

    #[test]
    fn unknown_explicit_stage_is_reported() {
        assert_eq!(
            choose(None, Some("poststart"), Some(3)),
            Unknown("poststart".into())
        );
        assert_eq!(
            choose(Some("createContainer"), None, None),
            Unknown("createContainer".into())
        );
    }
}

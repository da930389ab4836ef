//! What a run reads from the profiles directory before it starts: the
//! profile's text, the attribution categories and the checklist.
//!
//! A series of runs (`--compare`, `baseline save|check`) reads them once,
//! at its start, and gives every run the same copy. Read per run, a file
//! edited while the series ran made its later runs differ from its first
//! ones: a checklist rule naming a metric the measured build did not have
//! stopped a compare series halfway, and a changed phase or probe setting
//! would have been compared as if it were the variant.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::RunError;
use crate::analyze::{attribution::Categories, checklist::Checklist};
use crate::spec::{ProfileSpec, SpecError};

/// A profile as read once: see the module's documentation.
#[derive(Debug, Clone)]
pub struct Inputs {
    spec_path: PathBuf,
    profile_text: String,
    pub categories: Arc<Categories>,
    pub checklist: Arc<Checklist>,
}

impl Inputs {
    /// Reads the profile at `spec_path` and the attribution and checklist
    /// files beside it (the shipped ones where there are none). A profile
    /// that is not there, or rules that do not parse, stop the run before
    /// anything starts.
    pub fn load(spec_path: &Path) -> Result<Inputs, RunError> {
        let profile_text = std::fs::read_to_string(spec_path).map_err(|e| SpecError {
            file: spec_path.to_path_buf(),
            field: String::new(),
            message: format!("cannot read the profile: {e}"),
        })?;
        let profiles_dir = spec_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let categories =
            Categories::load(&profiles_dir).map_err(|e| RunError::Usage(e.to_string()))?;
        let checklist =
            Checklist::load(&profiles_dir).map_err(|e| RunError::Usage(e.to_string()))?;
        Ok(Inputs {
            spec_path: spec_path.to_path_buf(),
            profile_text,
            categories: Arc::new(categories),
            checklist: Arc::new(checklist),
        })
    }

    /// The profile with `overrides` applied, parsed from the text read at
    /// [`Inputs::load`].
    pub fn spec(&self, overrides: &[String]) -> Result<ProfileSpec, SpecError> {
        ProfileSpec::parse_with(&self.profile_text, &self.spec_path, overrides)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Files changed after `load` do not reach the runs that use it.
    #[test]
    fn edits_after_loading_do_not_reach_the_series() {
        let dir = std::env::temp_dir().join(format!("pp-inputs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../profiles");
        let spec_path = dir.join("tcp.toml");
        std::fs::copy(shipped.join("tcp.toml"), &spec_path).unwrap();
        std::fs::copy(shipped.join("checklist.toml"), dir.join("checklist.toml")).unwrap();
        let inputs = Inputs::load(&spec_path).unwrap();
        let rules = inputs.checklist.rules.len();
        let name = inputs.spec(&[]).unwrap().name;

        // A profile that no longer parses and a checklist with a broken rule.
        std::fs::write(&spec_path, "name = ").unwrap();
        std::fs::write(dir.join("checklist.toml"), "[[rule]]\nid = 1\n").unwrap();
        assert!(ProfileSpec::load_with(&spec_path, &[]).is_err());
        assert!(Checklist::load(&dir).is_err());

        let again = inputs.clone();
        assert_eq!(again.spec(&[]).unwrap().name, name);
        assert_eq!(again.checklist.rules.len(), rules);
        assert!(rules > 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

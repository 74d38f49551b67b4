//! A small Reverter (Incus `shared/revert`): steps registered while a multi-step change proceeds
//! run in reverse order on drop unless the change calls `success()`. Undo steps never panic; a
//! failing undo step is logged and the remaining steps still run.

type Step<'a> = (String, Box<dyn FnOnce() -> crate::Result<()> + 'a>);

pub(crate) struct Reverter<'a> {
    steps: Vec<Step<'a>>,
}

impl<'a> Reverter<'a> {
    pub(crate) fn new() -> Self {
        Reverter { steps: Vec::new() }
    }

    /// Register an undo step; `what` names it in the log if it fails.
    pub(crate) fn add(
        &mut self,
        what: impl Into<String>,
        f: impl FnOnce() -> crate::Result<()> + 'a,
    ) {
        self.steps.push((what.into(), Box::new(f)));
    }

    /// The change completed: forget every undo step.
    pub(crate) fn success(mut self) {
        self.steps.clear();
    }
}

impl Drop for Reverter<'_> {
    fn drop(&mut self) {
        while let Some((what, f)) = self.steps.pop() {
            if let Err(e) = f() {
                tracing::warn!("undo step '{what}' failed: {e}");
            }
        }
    }
}

impl std::fmt::Debug for Reverter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reverter")
            .field("steps", &self.steps.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[test]
    fn runs_in_reverse_unless_success() {
        let log = RefCell::new(Vec::new());
        {
            let mut r = Reverter::new();
            r.add("a", || {
                log.borrow_mut().push("a");
                Ok(())
            });
            r.add("b", || {
                log.borrow_mut().push("b");
                Err(crate::Error::Invalid("boom".into()))
            });
            r.add("c", || {
                log.borrow_mut().push("c");
                Ok(())
            });
        }
        assert_eq!(*log.borrow(), vec!["c", "b", "a"]);
        log.borrow_mut().clear();
        let mut r = Reverter::new();
        r.add("a", || {
            log.borrow_mut().push("a");
            Ok(())
        });
        r.success();
        assert!(log.borrow().is_empty());
    }
}

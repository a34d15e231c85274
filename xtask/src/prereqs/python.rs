//! The Python interpreter Buildroot's scripts and check-package run with: the first one that
//! imports every module they need.

use xshell::{cmd, Shell};

use super::problem::Problem;

/// Interpreters tried in turn: pyenv and the like may shadow the system one that has Debian's
/// python3-* packages.
const PYTHONS: &[&str] = &["python3", "/usr/bin/python3"];

/// A Python module and the Debian package that brings it.
type PythonModule<'a> = (&'a str, &'a str);

/// The first interpreter that can import every module, given what each candidate lacks (`None`:
/// it does not run). Otherwise the problems of the system interpreter, which apt installs into.
pub fn pick_python<'a>(
    candidates: &[(&'a str, Option<Vec<PythonModule>>)],
) -> Result<&'a str, Vec<Problem>> {
    if let Some((python, _)) = candidates
        .iter()
        .find(|(_, lacks)| lacks.as_ref().is_some_and(Vec::is_empty))
    {
        return Ok(python);
    }
    match candidates
        .iter()
        .rev()
        .find_map(|(_, lacks)| lacks.as_ref())
    {
        Some(lacks) => Err(lacks
            .iter()
            .map(|(module, package)| Problem::PythonModule {
                module: module.to_string(),
                package: package.to_string(),
            })
            .collect()),
        None => Err(vec![Problem::Missing {
            tool: "python3".into(),
            package: "python3".into(),
        }]),
    }
}

/// A Python on this machine that can import every `(module, Debian package)`, or what is missing.
pub fn python_with(sh: &Shell, modules: &[PythonModule]) -> Result<String, Vec<Problem>> {
    let candidates: Vec<_> = PYTHONS
        .iter()
        .map(|&python| {
            let runs = cmd!(sh, "{python} -c ''")
                .quiet()
                .ignore_stdout()
                .ignore_stderr()
                .run()
                .is_ok();
            let lacks = runs.then(|| {
                modules
                    .iter()
                    .copied()
                    .filter(|(module, _)| {
                        let import = format!("import {module}");
                        cmd!(sh, "{python} -c {import}")
                            .quiet()
                            .ignore_stdout()
                            .ignore_stderr()
                            .run()
                            .is_err()
                    })
                    .collect()
            });
            (python, lacks)
        })
        .collect();
    pick_python(&candidates).map(String::from)
}

#[cfg(test)]
mod tests {
    use super::super::problem::report;
    use super::*;

    #[test]
    fn picks_the_first_python_with_every_module() {
        let magic = ("magic", "python3-magic");
        let flake8 = ("flake8", "python3-flake8");
        assert_eq!(
            pick_python(&[
                ("python3", Some(vec![magic])),
                ("/usr/bin/python3", Some(vec![]))
            ]),
            Ok("/usr/bin/python3")
        );
        assert_eq!(
            pick_python(&[
                ("python3", Some(vec![])),
                ("/usr/bin/python3", Some(vec![]))
            ]),
            Ok("python3")
        );
        // Neither has both: name what the system interpreter lacks, with its package.
        let problems = pick_python(&[
            ("python3", Some(vec![magic, flake8])),
            ("/usr/bin/python3", Some(vec![flake8])),
            ("absent", None),
        ])
        .unwrap_err();
        let text = report(&problems, "check runs").unwrap();
        assert!(
            text.contains("the Python module flake8 is missing")
                && text.contains("sudo apt-get install python3-flake8\n"),
            "{text}"
        );
        assert!(!text.contains("magic"), "{text}");
        assert_eq!(
            pick_python(&[("python3", None)]).unwrap_err(),
            vec![Problem::Missing {
                tool: "python3".into(),
                package: "python3".into()
            }]
        );
    }
}

//! README's layout table against the tree (issue 12: "README's layout table matches the tree").
//!
//! Every file under `src/` is named by the table, either by its path (`src/app.rs`) or, in the
//! row of its directory (`src/workflow/`), by its file name; and every `src/…` path the table
//! names exists.

use std::collections::BTreeSet;
use std::path::Path;

fn layout_rows() -> Vec<String> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let section = readme
        .split("\n## Layout\n")
        .nth(1)
        .expect("README.md has a '## Layout' section");
    let section = section.split("\n## ").next().unwrap_or(section);
    section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(str::to_string)
        .collect()
}

/// The backticked words of a row's first cell (the paths it is about).
fn named_paths(row: &str) -> Vec<String> {
    let first_cell = row.trim_start_matches('|').split('|').next().unwrap_or("");
    first_cell
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

fn source_files(dir: &Path, root: &Path, out: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).expect("src is readable") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            source_files(&path, root, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let relative = path.strip_prefix(root).expect("under the root");
            out.insert(relative.to_string_lossy().replace('\\', "/"));
        }
    }
}

#[test]
fn the_readme_layout_table_names_every_source_file_and_only_existing_ones() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let rows = layout_rows();
    assert!(rows.len() > 5, "the layout table looks empty: {rows:?}");
    let mut files = BTreeSet::new();
    source_files(&root.join("src"), root, &mut files);
    assert!(files.len() > 20, "{files:?}");

    let mut missing_paths = Vec::new();
    for row in &rows {
        for path in named_paths(row).iter().filter(|p| p.starts_with("src/")) {
            if !root.join(path).exists() {
                missing_paths.push(path.clone());
            }
        }
    }
    assert_eq!(
        missing_paths,
        Vec::<String>::new(),
        "README's layout table names paths that do not exist"
    );

    let unnamed: Vec<&String> = files
        .iter()
        .filter(|file| {
            let (dir, name) = file.rsplit_once('/').expect("under src/");
            let by_path = rows
                .iter()
                .any(|r| named_paths(r).iter().any(|p| p == *file));
            let by_dir = rows.iter().any(|r| {
                named_paths(r).iter().any(|p| p == &format!("{dir}/"))
                    && r.contains(&format!("`{name}`"))
            });
            !(by_path || by_dir)
        })
        .collect();
    assert_eq!(
        unnamed,
        Vec::<&String>::new(),
        "source files README's layout table does not name (add them to its row)"
    );
}

//! `-o json|yaml|table` for every read command: one serialisable value, printed the way the
//! operator asked (a kubectl-style table by default on a terminal, JSON when piped).

use std::io::{IsTerminal, Write};

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Json,
    Yaml,
    Table,
}

/// `-o` as every read command takes it.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct OutputArg {
    /// Output format. Default: table on a terminal, JSON otherwise.
    #[arg(short = 'o', long = "output", value_enum)]
    pub output: Option<Format>,
}

impl OutputArg {
    pub fn format(&self) -> Format {
        self.output.unwrap_or_else(|| {
            if std::io::stdout().is_terminal() {
                Format::Table
            } else {
                Format::Json
            }
        })
    }
}

/// Rows of a table: the column names, then one cell per column for each row.
pub trait Tabular {
    fn headers() -> Vec<&'static str>;
    fn cells(&self) -> Vec<String>;
}

/// Prints `rows` (a list) in `format`.
pub fn print_list<T: Serialize + Tabular>(rows: &[T], format: Format) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(rows)?)?,
        Format::Yaml => write!(out, "{}", serde_norway::to_string(rows)?)?,
        Format::Table => {
            let body: Vec<Vec<String>> = rows.iter().map(Tabular::cells).collect();
            write!(out, "{}", table(&T::headers(), &body))?
        }
    }
    Ok(())
}

/// Prints one value in `format`; as a table it is one row.
pub fn print_one<T: Serialize + Tabular>(value: &T, format: Format) -> anyhow::Result<()> {
    match format {
        Format::Table => print_list(std::slice::from_ref(value), format),
        _ => {
            let mut out = std::io::stdout().lock();
            match format {
                Format::Yaml => write!(out, "{}", serde_norway::to_string(value)?)?,
                _ => writeln!(out, "{}", serde_json::to_string_pretty(value)?)?,
            }
            Ok(())
        }
    }
}

/// kubectl's plain layout: upper-case headers, columns padded to their widest cell, three spaces
/// apart. Cells never hold a newline (it would break every `awk` over the output).
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let clean = |cell: &str| cell.replace(['\n', '\r', '\t'], " ");
    let mut grid: Vec<Vec<String>> = vec![headers.iter().map(|h| h.to_uppercase()).collect()];
    grid.extend(
        rows.iter()
            .map(|row| row.iter().map(|c| clean(c)).collect()),
    );
    let columns = headers.len();
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            grid.iter()
                .map(|row| row.get(i).map_or(0, |c| c.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut text = String::new();
    for row in &grid {
        let mut line = String::new();
        for (i, width) in widths.iter().enumerate() {
            let cell = row.get(i).map(String::as_str).unwrap_or("");
            if i + 1 == columns {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}   "));
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::table;

    #[test]
    fn columns_line_up_under_upper_case_headers_and_cells_stay_on_one_line() {
        let text = table(
            &["id", "plan"],
            &[
                vec!["c1".into(), "starter".into()],
                vec!["customer-2".into(), "a\nb".into()],
            ],
        );
        assert_eq!(
            text,
            "ID           PLAN\nc1           starter\ncustomer-2   a b\n"
        );
    }
}

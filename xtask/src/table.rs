//! The aligned plain-text tables that `cargo xtask infra status`, `infra up` and `status` print.

use std::fmt::Write as _;

/// `header` and `rows` as lines of left-aligned columns two spaces apart, without trailing blanks.
pub(crate) fn render<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(str::len);
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let mut out = String::new();
    let header = header.map(str::to_owned);
    for row in std::iter::once(&header).chain(rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:width$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    out
}

/// Prints the table [`render`] makes to standard output.
pub(crate) fn print<const N: usize>(header: [&str; N], rows: &[[String; N]]) {
    print!("{}", render(header, rows));
}

#[cfg(test)]
mod tests {
    use super::render;

    #[test]
    fn tables_align_columns() {
        let table = render(["A", "BB"], &[["xyz".to_owned(), "1".to_owned()]]);
        assert_eq!(table, "A    BB\nxyz  1\n");
    }

    #[test]
    fn a_column_is_as_wide_as_its_widest_cell_and_lines_end_without_blanks() {
        let table = render(
            ["NAME", "URL"],
            &[
                ["a".to_owned(), String::new()],
                ["longer".to_owned(), "x".to_owned()],
            ],
        );
        assert_eq!(table, "NAME    URL\na\nlonger  x\n");
    }
}

//! The self-contained HTML page and SVG chart of a run report.

"""Reports from a cross-evaluation: tables (markdown, CSV), results.json, per_example.csv,
figures, and the `reproduce` summary. Everything here reads predictions and metrics; nothing
here trains or attacks."""
from winn_robust.reporting.files import rebuild_tables, results_document, write_reports
from winn_robust.reporting.per_example import metrics_from_per_example, per_example_frame, result_from_per_example
from winn_robust.reporting.tables import table_frame, table_markdown

__all__ = ["metrics_from_per_example", "per_example_frame", "rebuild_tables", "result_from_per_example",
           "results_document", "table_frame", "table_markdown", "write_reports"]

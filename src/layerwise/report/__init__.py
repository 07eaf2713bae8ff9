"""One self-contained HTML page from one or more results directories (``layerwise report``).

Each directory's ``results.json`` is read and validated (``layerwise.results/2``, or ``/1``). The
page opens with a table across methods (each directory's own variant against its reference:
accuracy with its CI, drop, cost ratio, paired verdict), then one section per directory: every
variant with every measured value, the method's own tables (profile per layer, UnIT sweep,
AdaLayerNet plan, LWAC budget phases, ELA removed layers and timings), paired comparisons with
their verdicts, and its figures embedded as data URIs so the page can be mailed as one file.
Quick (smoke) runs are marked, and a latency whose IQR is wider than its median is flagged.
"""

from .page import REPORT_FILE, build_report, report_path
from .variants import _comparisons_table, _variant_row

__all__ = ["REPORT_FILE", "_comparisons_table", "_variant_row", "build_report", "report_path"]

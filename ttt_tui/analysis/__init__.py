"""From the three losses to what they mean: statistics by the report rules (``stats``), findings and verdicts
(``diagnosis``), windows and regime changes over time (``windows``), the headline (``headline``), the outer
loss (``outer``), decimation for charts and plots (``decimate``)."""

"""What the ledger says about the future and the unusual: forecasts, spend spikes, the offline dashboard, alerts.

Modules: :mod:`.data` (the ledger's spend as plain series, and the calls behind a bucket), :mod:`.forecast`
(month-end projection, STL + ETS, and its backtest), :mod:`.anomalies` (robust STL spike detection, and its
evaluation), :mod:`.dashboard` (one offline HTML page), :mod:`.alerts` (callbacks and Slack-compatible webhooks,
deduplicated), :mod:`.commands` (the ``aicost forecast / anomalies / dashboard / alerts`` subcommands).
Documented in docs/reports.md. Needs ``pip install "aicost-otel[reports]"`` (statsmodels, pandas, plotly).
"""

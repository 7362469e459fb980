"""Reports over the ledger: forecasts, anomalies, alerts and the offline dashboard."""

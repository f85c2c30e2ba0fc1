"""linewatch collector: regional reliability statistics from many agents' rows (InfluxDB or
volunteers' store files), published only for cells above the floor: tables, CSV/JSON, the
regional page and the ``regional_*`` write-back for dashboards."""

"""Resource metrics: what agents report, kept in memory (`store`), served by the MetricsService (`service`)."""

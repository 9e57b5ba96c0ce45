"""Libraries both planes and the CLI use: certificates and tokens (`pki`),
Prometheus serving (`telemetry`) and structured logs (`logs`). Below the planes,
above the object model; they import nothing from controlplane, agent or the CLI."""

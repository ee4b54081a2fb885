"""The HTTP surface: the server and its routes, the Prometheus collector, the /proc process-tree reader."""

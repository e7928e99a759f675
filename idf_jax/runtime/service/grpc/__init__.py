"""gRPC beside the HTTP service (KServe v2 inference, idf.v1.Sampling, health, reflection)."""

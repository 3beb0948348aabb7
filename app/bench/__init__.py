"""`strife bench`: throughput, latency and the echo ceiling on a throwaway stack."""

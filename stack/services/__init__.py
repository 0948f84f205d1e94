"""Local services for development, tests and benchmarks, one module each: PostgreSQL (`postgres`), its
streaming replica (`replica`), Redis (`redis`), Redis Sentinel (`sentinel`), and free ports (`ports`)."""

"""Gate suites for CI: load and resolve a suite, run its cases (in-process or on a worker), JUnit XML."""

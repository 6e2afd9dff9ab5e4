"""Faithful fake servers of the APIs we cannot reach here (Aiven, Cloud Controller/UAA) and Aiven-like exporters, for tests, benchmarks and the local demo."""

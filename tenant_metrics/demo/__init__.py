"""The local demo: the whole system on one machine, fakes standing in for Aiven and Cloud Controller."""

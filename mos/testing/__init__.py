"""Test support that ships with mos: the network-namespace test bed
(``mos.testing.testbed``, also ``mos testbed up|down``).  Nothing in the
runtime or the core imports this package."""

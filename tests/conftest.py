import os
import sys

# tests import helpers (tcpconv, _netpkt) from this folder
sys.path.insert(0, os.path.dirname(__file__))

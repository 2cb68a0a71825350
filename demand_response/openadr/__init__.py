"""OpenADR for the demand-response market: offers stay on chain, OpenADR carries the rest.

* ``vtn.UtilityVtn``: the utility's OpenADR 2.0b VTN (OpenLEADR) with its SQLite store;
* ``ven.ConsumerVen``: a consumer as a VEN of a utility's VTN;
* ``context``: the ``dr://<chainId>/<contract>/<requestId>`` market context and the VEN
  registration proof;
* ``oadr3``: OpenADR 3.0 objects and schema checks for the Flask blueprint
  ``flaskapp/openadr3.py``.

Everything here needs the optional extra ``openadr`` (``pip install .[openadr]``); nothing is
imported from OpenLEADR until a VTN or VEN starts.
"""

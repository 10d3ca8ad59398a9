"""An HTTP request logger on mos.app.http: Zeek's http.log or EVE http records."""

# Declarations of libhtp 0.5 (OISF's HTTP parser, Suricata 7's), the parts
# mos.app._http uses: `from mos.app._htp cimport *`.
from libc.stdint cimport int64_t, uint64_t

cdef extern from "sys/time.h":
    cdef struct timeval:
        long tv_sec
        long tv_usec

cdef extern from "htp/htp.h" nogil:
    ctypedef timeval htp_time_t
    ctypedef struct bstr:
        size_t len
    unsigned char *bstr_ptr(const bstr *b)
    size_t bstr_len(const bstr *b)

    ctypedef struct htp_cfg_t
    ctypedef struct htp_list_array_t
    ctypedef struct htp_table_t
    ctypedef struct htp_uri_t

    ctypedef struct htp_conn_t:
        htp_list_array_t *transactions

    ctypedef struct htp_connp_t

    enum htp_tx_req_progress_t:
        HTP_REQUEST_NOT_STARTED, HTP_REQUEST_LINE, HTP_REQUEST_HEADERS, HTP_REQUEST_BODY,
        HTP_REQUEST_TRAILER, HTP_REQUEST_COMPLETE
    enum htp_tx_res_progress_t:
        HTP_RESPONSE_NOT_STARTED, HTP_RESPONSE_LINE, HTP_RESPONSE_HEADERS, HTP_RESPONSE_BODY,
        HTP_RESPONSE_TRAILER, HTP_RESPONSE_COMPLETE

    ctypedef struct htp_tx_t:
        htp_connp_t *connp
        bstr *request_line
        bstr *request_method
        bstr *request_uri
        bstr *request_protocol
        int request_protocol_number
        int is_protocol_0_9
        htp_table_t *request_headers
        int64_t request_message_len
        int64_t request_entity_len
        bstr *request_hostname
        int request_port_number
        bstr *response_line
        bstr *response_protocol
        int response_protocol_number
        bstr *response_status
        int response_status_number
        bstr *response_message
        int seen_100continue
        htp_table_t *response_headers
        int64_t response_content_length
        int response_transfer_coding
        int64_t response_message_len
        int64_t response_entity_len
        uint64_t flags
        size_t index
        htp_tx_req_progress_t request_progress
        htp_tx_res_progress_t response_progress

    ctypedef struct htp_tx_data_t:
        htp_tx_t *tx
        const unsigned char *data
        size_t len
        int is_last

    ctypedef struct htp_header_t:
        bstr *name
        bstr *value
        uint64_t flags

    enum:
        HTP_OK
        HTP_ERROR
        HTP_STREAM_NEW
        HTP_STREAM_OPEN
        HTP_STREAM_CLOSED
        HTP_STREAM_ERROR
        HTP_STREAM_TUNNEL
        HTP_STREAM_DATA_OTHER
        HTP_STREAM_STOP
        HTP_STREAM_DATA
        HTP_SERVER_IDS
        HTP_CODING_IDENTITY
        HTP_DECODER_DEFAULTS
        HTP_DECODER_URL_PATH

    htp_cfg_t *htp_config_create()
    void htp_config_destroy(htp_cfg_t *cfg)
    int htp_config_set_server_personality(htp_cfg_t *cfg, int personality)
    void htp_config_set_response_decompression(htp_cfg_t *cfg, int enabled)
    void htp_config_set_request_decompression(htp_cfg_t *cfg, int enabled)
    void htp_config_set_compression_bomb_limit(htp_cfg_t *cfg, size_t limit)
    void htp_config_set_compression_time_limit(htp_cfg_t *cfg, size_t usec)
    void htp_config_set_field_limits(htp_cfg_t *cfg, size_t soft, size_t hard)
    void htp_config_set_number_headers_limit(htp_cfg_t *cfg, unsigned int limit)
    void htp_config_set_tx_auto_destroy(htp_cfg_t *cfg, int enabled)
    void htp_config_register_request_line(htp_cfg_t *cfg, int (*cb)(htp_tx_t *))
    void htp_config_register_request_headers(htp_cfg_t *cfg, int (*cb)(htp_tx_t *))
    void htp_config_register_request_body_data(htp_cfg_t *cfg, int (*cb)(htp_tx_data_t *))
    void htp_config_register_request_complete(htp_cfg_t *cfg, int (*cb)(htp_tx_t *))
    void htp_config_register_response_headers(htp_cfg_t *cfg, int (*cb)(htp_tx_t *))
    void htp_config_register_response_body_data(htp_cfg_t *cfg, int (*cb)(htp_tx_data_t *))
    void htp_config_register_response_complete(htp_cfg_t *cfg, int (*cb)(htp_tx_t *))

    htp_connp_t *htp_connp_create(htp_cfg_t *cfg)
    void htp_connp_destroy_all(htp_connp_t *connp)
    void htp_connp_open(htp_connp_t *connp, const char *caddr, int cport, const char *saddr,
                        int sport, htp_time_t *ts)
    void htp_connp_close(htp_connp_t *connp, const htp_time_t *ts)
    int htp_connp_req_data(htp_connp_t *connp, const htp_time_t *ts, const void *data,
                           size_t len)
    int htp_connp_res_data(htp_connp_t *connp, const htp_time_t *ts, const void *data,
                           size_t len)
    size_t htp_connp_req_data_consumed(htp_connp_t *connp)
    size_t htp_connp_res_data_consumed(htp_connp_t *connp)
    void *htp_connp_get_user_data(const htp_connp_t *connp)
    void htp_connp_set_user_data(htp_connp_t *connp, const void *data)
    htp_conn_t *htp_connp_get_connection(const htp_connp_t *connp)
    htp_tx_t *htp_connp_get_in_tx(const htp_connp_t *connp)
    htp_tx_t *htp_connp_get_out_tx(const htp_connp_t *connp)

    void *htp_list_array_get(const htp_list_array_t *l, size_t idx)
    size_t htp_list_array_size(const htp_list_array_t *l)
    void *htp_table_get_index(const htp_table_t *t, size_t idx, bstr **key)
    size_t htp_table_size(const htp_table_t *t)
    int htp_tx_destroy(htp_tx_t *tx)
    void *htp_tx_get_user_data(const htp_tx_t *tx)
    void htp_tx_set_user_data(htp_tx_t *tx, void *user_data)

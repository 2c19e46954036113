package org.ngrinder.http

/** Stand-in for nGrinder's `HTTPResponse`: status, body and headers of one answer. */
class HTTPResponse {
	private final int statusCode
	private final byte[] body
	private final Map<String, List<String>> headers

	HTTPResponse(int statusCode, byte[] body, Map<String, List<String>> headers) {
		this.statusCode = statusCode
		this.body = body
		this.headers = headers
	}

	int getStatusCode() { statusCode }

	byte[] getBodyBytes() { body }

	String getBodyText() { new String(body, "UTF-8") }

	/** nGrinder answers a `Header` (name and value); here its value. */
	String getHeader(String name) { headers.find { it.key.equalsIgnoreCase(name) }?.value?.first() }
}

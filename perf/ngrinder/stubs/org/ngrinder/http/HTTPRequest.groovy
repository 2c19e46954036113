package org.ngrinder.http

import check.Recorder
import groovy.json.JsonSlurper

import java.net.http.HttpClient
import java.net.http.HttpRequest as JdkRequest
import java.net.http.HttpResponse as JdkResponse
import java.time.Duration

/**
 * Stand-in for nGrinder's `org.ngrinder.http.HTTPRequest` (3.5.4 and later), with its
 * behaviour where it matters: the headers given by `setHeaders` are ONE field of the
 * instance, used by every request sent without headers of its own, from whichever thread.
 * Headers given with a call replace that field for the call. Each exchange is recorded with
 * the sending thread and its bearer token, for harness.groovy to check.
 */
class HTTPRequest {
	private static final HttpClient CLIENT = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).build()

	/**
	 * nGrinder's "Target Host" list (a host name → an address, applied to the JVM's name
	 * lookups): from the system property check.targetHosts, e.g. "minipay=127.0.0.1".
	 */
	private static final Map<String, String> TARGET_HOSTS = (System.getProperty("check.targetHosts") ?: "")
		.split(",").findAll { it.contains("=") }.collectEntries { it.split("=", 2) as List }

	private Map<String, String> headers = [:]

	HTTPRequest() {}

	void setHeaders(Map<String, String> headers) {
		Recorder.usedBy(System.identityHashCode(this), Recorder.headerSetters)
		this.headers = headers
	}

	HTTPResponse GET(String uri) { send("GET", uri, null, [:]) }

	HTTPResponse GET(String uri, Map<String, String> params) { send("GET", withQuery(uri, params), null, [:]) }

	HTTPResponse GET(String uri, Map<String, String> params, Map<String, String> headers) {
		send("GET", withQuery(uri, params), null, headers)
	}

	HTTPResponse POST(String uri, byte[] content) { send("POST", uri, content, [:]) }

	HTTPResponse POST(String uri, byte[] content, Map<String, String> headers) { send("POST", uri, content, headers) }

	private static String withQuery(String uri, Map<String, String> params) {
		if (!params) return uri
		uri + (uri.contains("?") ? "&" : "?") + params.collect { k, v ->
			URLEncoder.encode(k, "UTF-8") + "=" + URLEncoder.encode(v, "UTF-8")
		}.join("&")
	}

	private HTTPResponse send(String method, String uri, byte[] content, Map<String, String> callHeaders) {
		Recorder.usedBy(System.identityHashCode(this), Recorder.instanceThreads)
		Map<String, String> actual = callHeaders
		if (actual.isEmpty()) {
			// The shared field, read when the request is built: another thread may have set it
			// since this one did (a short pause stands for building the request).
			Thread.sleep(2)
			actual = this.headers
		}
		URI target = URI.create(uri)
		String address = TARGET_HOSTS[target.host]
		if (address) {
			target = URI.create(target.scheme + "://" + address + (target.port < 0 ? "" : ":" + target.port) +
				target.rawPath + (target.rawQuery ? "?" + target.rawQuery : ""))
		}
		def builder = JdkRequest.newBuilder(target).timeout(Duration.ofSeconds(60))
		actual.each { name, value -> builder.header(name, value) }
		builder.method(method, content == null ? JdkRequest.BodyPublishers.noBody() : JdkRequest.BodyPublishers.ofByteArray(content))
		JdkResponse<byte[]> answer = CLIENT.send(builder.build(), JdkResponse.BodyHandlers.ofByteArray())
		def response = new HTTPResponse(answer.statusCode(), answer.body(), answer.headers().map())
		String auth = actual.find { it.key.equalsIgnoreCase("Authorization") }?.value
		String path = URI.create(uri).path
		Recorder.exchange([
			thread: Recorder.thread(), instance: System.identityHashCode(this), test: Recorder.CURRENT_TEST.get(),
			method: method, path: path, status: response.statusCode,
			bearer: auth?.startsWith("Bearer ") ? auth.substring(7) : null,
			body: response.bodyText.take(300),
		])
		if (method == "POST" && path == "/v1/sessions" && response.statusCode == 201) {
			String token = new JsonSlurper().parseText(response.bodyText).token
			Recorder.tokenOwners[token] = Recorder.thread()
		}
		response
	}
}

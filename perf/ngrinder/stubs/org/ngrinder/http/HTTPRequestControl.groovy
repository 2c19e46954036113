package org.ngrinder.http

/** Stand-in for nGrinder's `HTTPRequestControl`: the connection timeout, in milliseconds. */
class HTTPRequestControl {
	static volatile int connectionTimeout = 2000

	static void setConnectionTimeout(int timeout) { connectionTimeout = timeout }

	static int getConnectionTimeout() { connectionTimeout }
}

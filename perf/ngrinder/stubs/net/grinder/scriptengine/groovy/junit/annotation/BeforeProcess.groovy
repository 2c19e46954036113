package net.grinder.scriptengine.groovy.junit.annotation

import java.lang.annotation.ElementType
import java.lang.annotation.Retention
import java.lang.annotation.RetentionPolicy
import java.lang.annotation.Target

/** Stand-in for nGrinder's @BeforeProcess (same package, runtime retention, on methods). */
@Retention(RetentionPolicy.RUNTIME)
@Target(ElementType.METHOD)
@interface BeforeProcess {}
